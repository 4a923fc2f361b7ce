"""The web console end to end in a real browser (Debian's chromium, driven by
Playwright): log in, find a study sent with storescu, see its thumbnails, press Burn
and watch the burn job reach 100 % on the jobs page, live. Screenshots are kept in
$DICOMBOX_ARTIFACTS (default: the test's temporary folder)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.webconsole import PASSWORD, add_user, store_study, web_config, web_url

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
THUMBNAILS_LOADED = """() => {
  const images = Array.from(document.querySelectorAll('.series img'));
  return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DICOMBOX_ARTIFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser():
    require("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def test_log_in_find_a_study_burn_it_and_watch_the_job(make_box, browser, artefacts, tmp_path):
    require("storescu")
    from playwright.sync_api import expect

    box = make_box(web_config(discs=tmp_path / "discs"))
    add_user(box, "otto", "operator")
    study = store_study(box, tmp_path / "study", "DOE^JANE", "P1", "20260320", rows=256,
                        columns=256)  # fmt: skip
    store_study(box, tmp_path / "other", "ROE^RICHARD", "P2", "20260110", count=2)
    url = web_url(box)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()

    # Log in: a stranger is sent to the form, and back where they wanted to go.
    page.goto(f"{url}/studies")
    expect(page).to_have_url(re.compile(r"/login\?next=/studies$"))
    page.fill("input[name=name]", "otto")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/studies")

    # Search by patient name (C-FIND wildcards) and open the study.
    page.fill("input[name=PatientName]", "DOE*")
    page.click("form.search button[type=submit]")
    rows = page.locator("table.studies tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("DOE, JANE")
    page.click("a.patient")
    expect(page).to_have_url(f"{url}/studies/{study}")
    page.wait_for_function(THUMBNAILS_LOADED)
    page.screenshot(path=str(artefacts / "study.png"), full_page=True)

    # The jobs page is open before the burn exists: the job appears and progresses live.
    jobs = context.new_page()
    jobs.goto(f"{url}/jobs")
    expect(jobs.locator("#live")).to_have_text("live")
    page.click("button[name=burn]")
    note = page.locator("p.note.ok")
    expect(note).to_contain_text("burn queued as job")
    job = re.search(r"job (\d+)", note.inner_text())[1]  # type: ignore[index]
    row = jobs.locator(f"#job-{job}")
    expect(row.locator(".state")).to_have_text("done", timeout=60_000)
    expect(row.locator(".percent")).to_have_text("100 %")
    expect(row.locator(".text")).to_contain_text("4 instances burned")
    expect(row.locator(".what")).to_contain_text("DOE JANE")
    expect(row.locator("form[action$='/cancel']")).to_be_hidden()  # a done job stays done
    jobs.screenshot(path=str(artefacts / "jobs.png"), full_page=True)
    assert list((tmp_path / "discs").glob("disc-*.iso"))

    # The dashboard: what the panel shows, throughput, disk, the burner.
    page.goto(f"{url}/")
    expect(page.locator("h1")).to_contain_text("DICOMBOX")
    expect(page.locator("body")).to_contain_text("6 images today")
    page.screenshot(path=str(artefacts / "dashboard.png"), full_page=True)
    for name in ("devices", "worklist", "audit", "log", "config", "api"):
        page.goto(f"{url}/{name}")
        expect(page.locator("h1")).to_be_visible()
    page.screenshot(path=str(artefacts / "api.png"), full_page=True)

    # Logging out ends the session.
    page.click("button:has-text('Log out')")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(f"{url}/jobs")
    expect(page).to_have_url(re.compile(r"/login\?next=/jobs$"))
    context.close()


def test_a_viewer_sees_no_action_buttons(make_box, browser, tmp_path):
    require("storescu")
    from playwright.sync_api import expect

    box = make_box(web_config())
    add_user(box, "vera", "viewer")
    study = store_study(box, tmp_path / "study", count=1)
    url = web_url(box)
    page = browser.new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "vera")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{url}/studies/{study}")
    page.wait_for_function(THUMBNAILS_LOADED)
    expect(page.locator("button[name=burn]")).to_have_count(0)
    page.close()
