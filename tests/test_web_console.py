"""The web console end to end in a real browser (Debian's chromium, driven by
Playwright): log in, find a study sent with storescu, see its thumbnails, press Burn
and watch the burn job reach 100 % on the jobs page, live. Screenshots are kept in
$DICOMBOX_ARTIFACTS (default: the test's temporary folder). The pages' HTML is also
checked as plain HTTP (urllib) returns it."""

from __future__ import annotations

import html
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.peers import free_port
from tests.support.webconsole import (
    PASSWORD,
    UrlClient,
    add_user,
    store_study,
    web_config,
    web_url,
)

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


# ---------------------------------------------------------------- plain HTTP
def cell(page: str, job: int, name: str) -> str:
    """The text of one cell (by its class) of a job's row on the jobs page."""
    row = re.search(rf'<tr id="job-{job}".*?</tr>', page, re.S)
    assert row, f"no row for job {job}"
    found = re.search(rf'<td class="{name}">(.*?)</td>', row[0], re.S)
    assert found, f"no {name} cell in job {job}'s row"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found[1])).split())


def wait_state(client: UrlClient, job: int, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        seen = client.get(f"/api/jobs/{job}").json()
        assert isinstance(seen, dict)
        if seen["state"] in states or time.monotonic() > deadline:
            assert seen["state"] in states, seen
            return seen
        time.sleep(0.2)


def test_jobs_page_says_what_each_job_works_on(make_box, tmp_path):
    """A forward, a print from the study page's form, and burns of several studies:
    each row says whose studies it works on, never a Python method's repr, and the
    console's notes say where to follow a job rather than which command to run."""
    require("storescu")
    closed = free_port()  # the archive is down: its forwards wait in the queue
    box = make_box(
        web_config(
            discs=tmp_path / "discs",
            extra=f"""[print]
retry_delay_s = 600
[[printer]]
name = "paper"
driver = "file"
folder = "{tmp_path / "paper"}"
[[remote]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = {closed}
retry_delay_s = 600
[[route]]
forward = ["archive"]
""",
        )
    )
    add_user(box, "otto", "operator")
    jane = store_study(box, tmp_path / "s1", "DOE^JANE", "P1", "20260320", count=2)
    jane_before = store_study(box, tmp_path / "s2", "DOE^JANE", "P1", "20250101", count=1)
    richard = store_study(box, tmp_path / "s3", "ROE^RICHARD", "P2", "20260110", count=1)
    edgar = store_study(box, tmp_path / "s4", "POE^EDGAR", "P3", "20251224", count=1)
    client = UrlClient(web_url(box)).login("otto")

    printed = client.post_form(f"/studies/{jane}/print", {"printer": "paper"})
    assert printed.status == 200, printed.text
    note = re.search(r'<p class="note ok"[^>]*>(.*?)</p>', printed.text, re.S)
    assert note and "print queued on paper as job" in note[1], printed.text
    assert "follow it on the Jobs page" in note[1] and "dicombox" not in note[1]
    print_job = int(re.search(r"as job (\d+)", note[1])[1])  # type: ignore[index]
    refused = client.post_form(f"/studies/{jane}/print", {"printer": "nowhere"})
    bad = re.search(r'<p class="note bad"[^>]*>(.*?)</p>', refused.text, re.S)
    assert bad and "no printer &#39;nowhere&#39;" in bad[1], refused.text
    assert "dicombox" not in bad[1]

    everyone = client.request("POST", "/api/actions/burn", {"studies": [jane, jane_before,
                              richard, edgar]}).json()  # fmt: skip
    one_patient = client.request("POST", "/api/actions/burn", {"studies": [jane,
                                 jane_before]}).json()  # fmt: skip
    assert isinstance(everyone, dict) and isinstance(one_patient, dict)
    assert "dicombox" not in str(everyone["message"])
    for job in (print_job, everyone["job"], one_patient["job"]):
        wait_state(client, int(job), ("done",))
    listed = client.get("/api/jobs").json()
    assert isinstance(listed, list)
    forwards = {j["id"]: j for j in listed if j["kind"] == "forward"}
    assert len(forwards) == 4, listed

    page = client.get("/jobs")
    assert page.status == 200
    assert "built-in method" not in page.text and " at 0x" not in page.text
    assert cell(page.text, everyone["job"], "what") == "4 studies, 3 patients"
    assert cell(page.text, one_patient["job"], "what") == "DOE JANE: 2 studies"
    assert cell(page.text, print_job, "what") == "paper DOE JANE 2026-03-20"
    whats = sorted(cell(page.text, job, "what") for job in forwards)
    assert whats == [
        "archive DOE JANE 2025-01-01 (1 image)",
        "archive DOE JANE 2026-03-20 (2 images)",
        "archive POE EDGAR 2025-12-24 (1 image)",
        "archive ROE RICHARD 2026-01-10 (1 image)",
    ]
    # The API says the same as the page.
    assert {j["id"]: j["what"] for j in listed}[everyone["job"]] == "4 studies, 3 patients"


def test_jobs_page_shows_when_a_waiting_forward_is_tried_next_and_why(make_box, tmp_path):
    """A forward to an archive that is down is not given up: its row says why the last
    try failed, when the next one is, and that its tries have no limit."""
    require("storescu")
    box = make_box(
        web_config(
            extra=f"""[[remote]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = {free_port()}
retry_delay_s = 600
[storage]
forward_delay_s = 0
[[route]]
forward = ["archive"]
"""
        )
    )
    add_user(box, "vera", "viewer")
    store_study(box, tmp_path / "s1", count=1)
    client = UrlClient(web_url(box)).login("vera")
    deadline = time.monotonic() + 60
    while not (forward := client.get("/api/jobs").json()[0])["last_error"]:
        assert time.monotonic() < deadline, forward
        time.sleep(0.2)
    assert forward["state"] == "queued" and forward["tries"] == "1/no limit", forward
    assert forward["retry_at"] == forward["next_run_at"] > time.time() + 500
    page = client.get("/jobs").text
    assert cell(page, forward["id"], "tries") == "1/no limit"
    shown = cell(page, forward["id"], "progress")
    next_try = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(forward["retry_at"]))
    assert "cannot reach archive" in shown and f"next try {next_try}" in shown, shown
