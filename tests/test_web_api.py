"""The REST API of the web console, over HTTP against a running box: sessions, roles and
CSRF; study search against findscu; thumbnails; jobs; actions; devices; audit; the
configuration; the OpenAPI document."""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import re
import time

import httpx
import pydicom
import pytest
from PIL import Image

from dicombox.core.box import load_plugins_and_config, open_box
from dicombox.core.tables import format_table
from tests.conftest import require
from tests.support.boxproc import RunningBox
from tests.support.peers import free_port, run
from tests.support.webconsole import (
    PASSWORD,
    UrlClient,
    add_user,
    signed_in,
    store_study,
    wait_job,
    web_config,
    web_url,
)

TRUSTED_KEY = "ab" * 32


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """One box with its console, three users, three studies, two printers (one of them
    a film printer that is switched off) and a USB stick."""
    require("storescu", "findscu")
    root = tmp_path_factory.mktemp("web")
    (root / "usb" / "STICK1").mkdir(parents=True)
    closed = free_port()  # nothing listens there: a peer that is down
    config = web_config(
        discs=root / "discs",
        media=f'usb_root = "{root / "usb"}"\n',
        extra=f"""[print]
retry_delay_s = 600
[[printer]]
name = "paper"
driver = "file"
folder = "{root / "paper"}"
[[printer]]
name = "film"
driver = "dicom"
remote = "camera"
[[remote]]
name = "camera"
ae_title = "CAMERA"
host = "127.0.0.1"
port = {closed}
[[remote]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = {closed}
[updates]
trusted_keys = ["{TRUSTED_KEY}"]
""",
    )
    box = RunningBox(root / "var", config).start()
    try:
        for name, role in (("ada", "admin"), ("otto", "operator"), ("vera", "viewer")):
            add_user(box, name, role)
        box.studies = {
            "john": store_study(box, root / "s1", "DOE^JOHN", "P1", "20260105", count=2),
            "jane": store_study(box, root / "s2", "DOE^JANE", "P2", "20260320"),
            "richard": store_study(box, root / "s3", "ROE^RICHARD", "P3", "20260110", count=2),
        }
        box.url = web_url(box)
        box.root = root
        yield box
    finally:
        box.stop()


@pytest.fixture
def operator(web):
    client = signed_in(web.url, "otto")
    yield client
    client.close()


@pytest.fixture
def viewer(web):
    client = signed_in(web.url, "vera")
    yield client
    client.close()


@pytest.fixture
def admin(web):
    client = signed_in(web.url, "ada")
    yield client
    client.close()


# ---------------------------------------------------------------- sessions, roles, CSRF
def test_login_session_cookie_and_logout(web):
    with httpx.Client(base_url=web.url) as client:
        assert client.get("/api/studies").status_code == 401
        wrong = client.post("/api/login", json={"name": "otto", "password": "nope-nope"})
        assert wrong.status_code == 403
        assert wrong.json()["detail"] == "wrong name or password"
        answer = client.post("/api/login", json={"name": "otto", "password": PASSWORD})
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        token = answer.json()["csrf_token"]
        me = client.get("/api/me").json()
        assert (me["name"], me["role"], me["csrf_token"]) == ("otto", "operator", token)
        assert client.post("/api/logout").status_code == 403  # no CSRF token
        assert client.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
        assert client.get("/api/studies").status_code == 401


def test_pages_send_a_stranger_to_the_login_form(web):
    with httpx.Client(base_url=web.url) as client:
        answer = client.get("/studies?PatientName=DOE*")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=/studies%3FPatientName%3DDOE%2A"
        login = client.get("/login")
        assert login.status_code == 200 and 'name="password"' in login.text
        assert "default-src 'self'" in login.headers["content-security-policy"]


def test_roles(web, viewer, operator, admin):
    study = web.studies["jane"]
    refused = viewer.post("/api/actions/burn", json={"studies": [study]})
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this needs the operator role; vera is viewer"}
    assert viewer.get("/api/studies").status_code == 200  # looking is fine
    assert viewer.post("/api/jobs/1/cancel").status_code == 403
    burned = operator.post("/api/actions/burn", json={"studies": [study]})
    assert burned.status_code == 200, burned.text
    assert burned.json()["job"] > 0
    toml = {"toml": "[box]\nae_title = 'X'\n"}
    assert operator.post("/api/config/check", json=toml).status_code == 403
    assert operator.get("/api/users").status_code == 403
    assert admin.post("/api/config/check", json=toml).json()["ok"] is True


def test_csrf_token_is_required_with_a_session(web, operator):
    study = web.studies["john"]
    bare = httpx.Client(base_url=web.url, cookies=operator.cookies)
    missing = bare.post("/api/actions/burn", json={"studies": [study]})
    assert missing.status_code == 403
    assert "CSRF" in missing.json()["detail"]
    forged = bare.post(
        "/api/actions/burn", json={"studies": [study]}, headers={"X-CSRF-Token": "forged"}
    )
    assert forged.status_code == 403
    # A form carries the token as a field instead of a header.
    form = bare.post(f"/studies/{study}/burn", data={"copies": "1"})
    assert form.status_code == 403
    token = operator.headers["X-CSRF-Token"]
    form = bare.post(f"/studies/{study}/burn", data={"copies": "1", "csrf_token": token})
    assert form.status_code == 303 and form.headers["location"] == f"/studies/{study}"


def test_http_basic_for_scripts_needs_no_csrf_token(web):
    credentials = base64.b64encode(f"otto:{PASSWORD}".encode()).decode()
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Basic {credentials}"}) as c:
        assert c.get("/api/me").json()["via"] == "basic"
        answer = c.post("/api/actions/burn", json={"studies": [web.studies["richard"]]})
        assert answer.status_code == 200, answer.text
    wrong = base64.b64encode(b"otto:wrong-password").decode()
    answer = httpx.get(f"{web.url}/api/me", headers={"Authorization": f"Basic {wrong}"})
    assert answer.status_code == 401


def test_failed_logins_are_throttled(web):
    add_user(web, "tess", "viewer")
    with httpx.Client(base_url=web.url) as client:
        for _ in range(5):
            client.post("/api/login", json={"name": "tess", "password": "wrong-password"})
        blocked = client.post("/api/login", json={"name": "tess", "password": PASSWORD})
        assert blocked.status_code == 403
        assert "too many failed logins" in blocked.json()["detail"]


# ---------------------------------------------------------------- studies
_runs = itertools.count()


def findscu(box: RunningBox, keys: list[str]) -> set[str]:
    """Study Instance UIDs findscu gets from the box for these STUDY-level keys."""
    out = box.root / f"find-{next(_runs)}"
    out.mkdir()
    args = ["findscu", "-S", "-aec", "DICOMBOX", "-X", "-od", out]
    for key in ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys]:
        args += ["-k", key]
    done = run([*args, "127.0.0.1", box.port])
    assert done.returncode == 0, done.stdout + done.stderr
    return {str(pydicom.dcmread(p).StudyInstanceUID) for p in out.glob("rsp*.dcm")}


@pytest.mark.parametrize(
    "query",
    [
        {"PatientName": "DOE*", "StudyDate": "20260101-20260131"},
        {"PatientName": "DOE*"},
        {"PatientName": "*O*^J*"},
        {"StudyDate": "20260110-"},
        {"PatientID": "P3"},
        {"ModalitiesInStudy": "CT", "StudyDate": "-20260106"},
    ],
)
def test_study_search_finds_what_findscu_finds(web, viewer, query):
    answer = viewer.get("/api/studies", params=query)
    assert answer.status_code == 200, answer.text
    found = {s["study_instance_uid"] for s in answer.json()}
    assert found == findscu(web, [f"{k}={v}" for k, v in query.items()])
    assert found  # every query above matches something


def test_study_search_by_name_and_date_range(web, viewer):
    studies = viewer.get("/api/studies?PatientName=DOE*&StudyDate=20260101-20260131").json()
    assert [s["study_instance_uid"] for s in studies] == [web.studies["john"]]
    (john,) = studies
    assert john["patient_name"] == "DOE^JOHN" and john["modalities"] == ["CT"]
    assert (john["series"], john["instances"]) == (1, 2)
    bad = viewer.get("/api/studies?Colour=blue")
    assert bad.status_code == 400 and "not a study search key" in bad.json()["detail"]


def test_search_matches_names_whatever_their_case(web):
    """doe* finds the DOEs in the API and on the console's page; findscu, asking the Q/R
    SCP (case-sensitive names, as configured by default), still does not."""
    client = UrlClient(web.url).login("vera")
    does = {web.studies["john"], web.studies["jane"]}
    for name in ("doe*", "Doe^Jane", "dOE^j*", "*o*^JA*"):
        answer = client.get("/api/studies", {"PatientName": name})
        assert answer.status == 200, answer.text
        found = {s["study_instance_uid"] for s in answer.json()}  # type: ignore[union-attr]
        assert found == (does if name in ("doe*", "dOE^j*") else {web.studies["jane"]}), name
    page = client.get("/studies", {"PatientName": "doe*", "ModalitiesInStudy": "ct"})
    assert page.status == 200
    assert "2 studies" in page.text and "DOE, JOHN" in page.text and "DOE, JANE" in page.text
    assert "ROE" not in page.text and 'class="note bad' not in page.text
    assert findscu(web, ["PatientName=doe*"]) == set()


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("StudyDate", "2026-03-20", "YYYYMMDD"),
        ("StudyDate", "20261345", "YYYYMMDD"),
        ("StudyDate", "yesterday", "YYYYMMDD"),
        ("StudyTime", "2561", "HHMM"),
        ("StudyInstanceUID", "abc", "digits and dots"),
        ("PatientWeight", "heavy", "a number"),
        ("Colour", "blue", "PatientName"),
    ],
)
def test_search_says_what_is_wrong_with_a_key_or_value(web, key, value, allowed):
    client = UrlClient(web.url).login("vera")
    answer = client.get("/api/studies", {key: value})
    assert answer.status == 400, answer.text
    error = answer.json()
    assert isinstance(error, dict)
    assert (error["key"], error["value"]) == (key, value)
    assert allowed in error["allowed"] and allowed in error["detail"]
    assert key in error["detail"] and (value in error["detail"] or key == "Colour")
    # The console says the same where everyone sees it, and no "0 studies".
    page = client.get("/studies", {key: value})
    assert page.status == 200
    shown = re.search(r'<p class="note bad search-error" role="alert">(.*?)</p>', page.text, re.S)
    assert shown, page.text
    assert html.unescape(shown[1]) == f"Nothing was searched: {error['detail']}"
    assert "0 studies" not in page.text


def test_study_detail_and_thumbnails(web, viewer):
    study = web.studies["jane"]
    detail = viewer.get(f"/api/studies/{study}").json()
    assert detail["patient_name"] == "DOE^JANE" and detail["instances"] == 4
    (series,) = detail["series"]
    assert len(series["instances"]) == 4
    assert series["preview"] == series["instances"][2]  # the middle image
    # The images are 64 x 48: a thumbnail of 128 keeps the proportions.
    png = viewer.get(f"/api/instances/{series['instances'][0]}/thumbnail.png?size=128")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert (image.format, image.size, image.mode) == ("PNG", (128, 96), "L")
    again = viewer.get(f"/api/instances/{series['instances'][0]}/thumbnail.png?size=128")
    assert again.content == png.content  # from the cache
    preview = viewer.get(f"/api/series/{series['series_instance_uid']}/thumbnail.png?size=64")
    assert Image.open(io.BytesIO(preview.content)).size == (64, 48)
    study_preview = viewer.get(f"/api/studies/{study}/thumbnail.png")
    assert Image.open(io.BytesIO(study_preview.content)).size == (256, 192)
    assert viewer.get("/api/studies/1.2.3.4").status_code == 404
    assert viewer.get("/api/instances/1.2.3.4/thumbnail.png").status_code == 404
    assert viewer.get("/api/instances/..%2Fetc/thumbnail.png").status_code == 404


# ---------------------------------------------------------------- jobs and actions
def test_burn_and_print_queue_jobs_that_finish(web, operator):
    study = web.studies["jane"]
    burn = operator.post("/api/actions/burn", json={"studies": [study]}).json()
    assert burn["ok"] and "burn queued as job" in burn["message"]
    done = wait_job(operator, burn["job"], "done")
    assert done["percent"] == 100 and "4 instances burned" in done["progress"]
    assert done["what"] == "DOE JANE 2026-03-20"
    printed = operator.post("/api/actions/print", json={"uids": [study], "printer": "paper"})
    assert printed.status_code == 200, printed.text
    assert wait_job(operator, printed.json()["job"], "done")["kind"] == "print"
    assert list((web.root / "paper").glob("*.pdf"))


def test_actions_refused_with_a_reason(web, operator):
    study = web.studies["john"]
    unknown = operator.post("/api/actions/send", json={"remote": "nowhere", "studies": [study]})
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == (
        "'nowhere' is no [[remote]] of this box (known: camera, archive)"
    )
    missing = operator.post("/api/actions/burn", json={"studies": ["1.2.3.4"]})
    assert missing.status_code == 400 and "no study 1.2.3.4" in missing.json()["detail"]
    printer = operator.post("/api/actions/print", json={"uids": [study], "printer": "x"})
    assert printer.status_code == 400 and "no printer 'x'" in printer.json()["detail"]
    worklist = operator.post("/api/actions/worklist-refresh")
    assert worklist.status_code == 400
    assert "no [worklist] ris configured" in worklist.json()["detail"]


def test_worklist_items(web, viewer):
    added = web.cli("worklist", "add", "--patient-name", "WORK^LIST ITEM", "--patient-id",
                    "W1", "--modality", "CT", "--accession", "A77", "--description",
                    "CT chest with contrast")  # fmt: skip
    assert added.returncode == 0, added.stderr
    items = viewer.get("/api/worklist").json()
    (item,) = [i for i in items if i["accession"] == "A77"]
    assert item["patient"] == "WORK^LIST ITEM" and item["mod"] == "CT"
    assert item["procedure"] == "CT chest with contrast" and item["state"] == "scheduled"
    page = viewer.get("/worklist")
    assert page.status_code == 200 and "CT chest with contrast" in page.text


def test_export_to_usb_and_send_run_as_jobs(web, operator):
    study = web.studies["richard"]
    export = operator.post("/api/actions/export", json={"studies": [study]}).json()
    assert export["message"].startswith("export to USB: ROE RICHARD: queued as job")
    done = wait_job(operator, export["job"], "done")
    assert done["kind"] == "console" and "2 instances written" in done["progress"]
    assert (web.root / "usb" / "STICK1" / "DICOMDIR").exists()
    # The archive is down: the send fails with the reason, and can be retried.
    send = operator.post("/api/actions/send", json={"remote": "archive", "studies": [study]})
    failed = wait_job(operator, send.json()["job"], "failed")
    assert failed["last_error"] and failed["can_retry"]
    retried = operator.post(f"/api/jobs/{failed['id']}/retry")
    assert retried.status_code == 200 and retried.json()["ok"]
    assert wait_job(operator, failed["id"], "failed")["attempts"] == 1


def test_jobs_list_cancel_and_retry(web, operator):
    # The film printer is off: its job waits in the queue for the printer.
    queued = operator.post(
        "/api/actions/print", json={"uids": [web.studies["john"]], "printer": "film"}
    ).json()
    job = queued["job"]
    deadline = time.monotonic() + 30
    while operator.get(f"/api/jobs/{job}").json()["attempts"] == 0:
        assert time.monotonic() < deadline, "the print job never ran"
        time.sleep(0.2)
    waiting = wait_job(operator, job, "queued")
    assert waiting["can_cancel"] and (waiting["last_error"] or waiting["progress"])
    listed = operator.get("/api/jobs", params={"state": "queued"}).json()
    assert job in [j["id"] for j in listed]
    assert operator.post(f"/api/jobs/{job}/cancel").json()["ok"]
    assert operator.get(f"/api/jobs/{job}").json()["state"] == "cancelled"
    again = operator.post(f"/api/jobs/{job}/cancel")
    assert again.status_code == 409 and "cannot be cancelled" in again.json()["detail"]
    assert operator.post(f"/api/jobs/{job}/retry").json()["ok"]
    assert operator.get(f"/api/jobs/{job}").json()["state"] in ("queued", "running")
    operator.post(f"/api/jobs/{job}/cancel")  # (it may be running a moment: best effort)
    assert operator.get("/api/jobs/999999").status_code == 404
    assert operator.get("/api/jobs?state=lost").status_code == 400


def test_job_stream_carries_progress_live(web, operator):
    events = []
    with operator.stream("GET", "/api/jobs/stream", timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        burn = operator.post("/api/actions/burn", json={"studies": [web.studies["jane"]]})
        job = burn.json()["job"]
        for line in stream.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["id"] == job:
                    events.append(event)
                    if event["event"] == "job.done":
                        break
    topics = [e["event"] for e in events]
    assert topics[0] == "job.started" and topics[-1] == "job.done", topics
    assert "job.progress" in topics and events[-1]["percent"] == 100


# ---------------------------------------------------------------- the box
def test_devices_with_their_state(viewer):
    devices = viewer.get("/api/devices").json()
    by_kind = {d["kind"]: d for d in devices}
    assert set(by_kind) >= {"burner", "printer", "usb", "panel"}
    assert "blank" in by_kind["burner"]["state"] or "burn" in by_kind["burner"]["state"]
    assert by_kind["usb"]["name"] == "STICK1" and "MB free" in by_kind["usb"]["state"]
    assert by_kind["panel"]["state"] == "none configured"
    printers = "\n".join(by_kind["printer"]["lines"])
    assert "Printer paper" in printers and "Printer film" in printers


def test_status_for_the_dashboard(web, viewer):
    status = viewer.get("/api/status").json()
    assert status["identity"]["ae_title"] == "DICOMBOX"
    assert status["identity"]["dicom_port"] == web.port
    assert status["totals"]["studies"] == 3
    assert status["throughput"]["today"] >= 8 and len(status["throughput"]["per_minute"]) == 60
    assert 0 < status["disk"]["used_percent"] <= 100
    assert any(line.startswith("web console: http://127.0.0.1:") for line in status["status"])


def test_audit_and_log_views(viewer):
    stored = viewer.get("/api/audit", params={"event": "instance-stored", "limit": 5}).json()
    assert len(stored) == 5 and all(r["event"] == "instance-stored" for r in stored)
    assert stored[0]["time"] >= stored[-1]["time"]  # newest first
    log = viewer.get("/api/log", params={"level": "INFO"}).json()
    assert any(r["message"].startswith("web console on http://") for r in log)


def test_configuration_is_shown_with_secrets_masked(viewer):
    view = viewer.get("/api/config").json()
    sections = view["sections"]
    assert sections["box"]["ae_title"] == "DICOMBOX"
    assert sections["updates"]["trusted_keys"] == "********"
    assert sections["web"]["listen"] == "127.0.0.1:0" and sections["web"]["key"] == ""
    assert TRUSTED_KEY not in json.dumps(view)
    assert [p["name"] for p in sections["printer"]] == ["paper", "film"]


def test_config_check_of_a_proposed_configuration(admin):
    bad = admin.post("/api/config/check", json={"toml": '[box]\nport = "eleven"\n'}).json()
    assert bad == {"ok": False, "error": "box.port = 'eleven': expected an integer"}
    broken = admin.post("/api/config/check", json={"toml": "[box\n"}).json()
    assert not broken["ok"] and broken["error"].startswith("not valid TOML")
    unknown = admin.post("/api/config/check", json={"toml": "[web]\nlisten = 'x'\n"}).json()
    assert not unknown["ok"] and "web.listen = 'x'" in unknown["error"]
    good = admin.post("/api/config/check", json={"toml": "[[remote]]\nname='a'\n"
                      "ae_title='A'\nhost='h'\nport=104\n"}).json()  # fmt: skip
    assert good["ok"] and good["summary"].startswith("OK (1 remote(s), 0 route(s)")


def test_users_managed_by_an_admin(web, admin):
    assert {"ada", "otto", "vera"} <= {u["name"] for u in admin.get("/api/users").json()}
    new = admin.post("/api/users", json={"name": "ned", "role": "viewer", "password": "x"})
    assert new.status_code == 400 and "at least 8 characters" in new.json()["detail"]
    new = admin.post("/api/users", json={"name": "ned", "role": "viewer", "password": PASSWORD})
    assert new.status_code == 201
    ned = signed_in(web.url, "ned")
    assert ned.get("/api/me").json()["role"] == "viewer"
    assert admin.delete("/api/users/ned").json()["ok"]
    assert ned.get("/api/me").status_code == 401  # removing a user ends their sessions
    ned.close()
    assert admin.delete("/api/users/ada").status_code == 400
    listed = web.cli("web", "user", "list")
    assert listed.returncode == 0 and "otto" in listed.stdout and "ned" not in listed.stdout


def test_openapi_document_with_http_basic(web):
    """A script with Basic credentials reads the document of the API it may call."""
    client = UrlClient(web.url).with_basic("vera")
    assert client.get("/api/me").status == 200
    document = client.get("/openapi.json")
    assert document.status == 200, document.text
    assert "/api/studies" in document.json()["paths"]  # type: ignore[index]
    wrong = UrlClient(web.url).with_basic("vera", "wrong-password").get("/openapi.json")
    assert wrong.status == 401
    assert UrlClient(web.url).get("/openapi.json").status == 401


def test_openapi_document_lists_every_endpoint(viewer):
    from fastapi.routing import APIRoute

    from dicombox.plugins.web.app import ROUTERS

    document = viewer.get("/openapi.json").json()
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 40
    for route in routes:
        assert route.path in document["paths"], route.path
        for method in route.methods - {"HEAD"}:
            assert method.lower() in document["paths"][route.path], (method, route.path)
    assert "/openapi.json" in document["paths"]
    page = viewer.get("/api")
    assert page.status_code == 200 and "/api/jobs/stream" in page.text


# ---------------------------------------------------------------- without a running box
def test_no_account_no_login(tmp_path):
    import asyncio

    from dicombox.plugins.web.app import create_app
    from dicombox.plugins.web.console import Console

    async def ask(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            page = await c.get("/login")
            refused = await c.post("/api/login", json={"name": "admin", "password": "admin"})
            return page, refused

    config, pm, infos = load_plugins_and_config(None, data_dir=str(tmp_path / "var"))
    box = open_box(config, pm, infos)
    try:
        page, refused = asyncio.run(ask(create_app(Console.of(box))))
    finally:
        box.close()
    # Whoever reads it has no shell on the box: it says whom to ask, not what to run.
    assert "no console account exists yet: ask whoever installed" in page.text
    assert "dicombox " not in page.text.replace("<h1>dicombox</h1>", "")
    assert refused.status_code == 403
    assert "no console account exists yet" in refused.json()["detail"]


def test_console_off_or_port_taken_leaves_the_box_running(make_box, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        box = make_box(f'[web]\nlisten = "127.0.0.1:{port}"\n', name="busy")
        assert not (box.data_dir / "run" / "web.json").exists()
        assert f"web console off: cannot listen on 127.0.0.1:{port}" in box.output()
    off = make_box('[web]\nlisten = ""\n', name="off")
    assert not (off.data_dir / "run" / "web.json").exists()
    assert off.cli("status").returncode == 0


def test_listing_parser_reads_the_core_table_format():
    from dicombox.plugins.web.verbs import parse_table

    rows = [["20260101", "0930", "CT", "DOE^JOHN", "a study with spaces"], ["2", "", "", "", ""]]
    text = format_table(rows, ["DATE", "TIME", "MOD", "PATIENT", "PROCEDURE"])
    parsed = parse_table(text)
    assert parsed[0] == {"DATE": "20260101", "TIME": "0930", "MOD": "CT",
                         "PATIENT": "DOE^JOHN", "PROCEDURE": "a study with spaces"}  # fmt: skip
    assert parsed[1]["DATE"] == "2" and parsed[1]["PROCEDURE"] == ""
    assert parse_table("no worklist items") == []


def test_passwords_are_salted_scrypt_hashes():
    from dicombox.plugins.web.accounts import check_password, hash_password

    one, two = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert one != two and one.startswith("scrypt$16384$8$1$")
    assert check_password("s3cret-pass", one) and not check_password("s3cret-pasS", one)
    assert not check_password("s3cret-pass", "md5$abc")


def test_listen_addresses():
    from dicombox.plugins.web.settings import parse_listen

    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("") is None
    for bad in ("8080", "localhost", ":8080", "host:99999"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_thumbnail_rendering_uses_the_render_hook(tmp_path):
    """A plugin's dicombox_render_image (the print plugin's windowing) wins over the
    built-in rendering."""
    import numpy as np

    from dicombox.core import hookimpl
    from dicombox.plugins.web.thumbnails import render
    from tests.support.synthetic import ct_dataset

    class Renderer:
        @hookimpl
        def dicombox_render_image(self, box, dataset, frame):
            return np.full((dataset.Rows, dataset.Columns), 7, np.uint8)

    config, pm, infos = load_plugins_and_config(None, data_dir=str(tmp_path / "var"))
    box = open_box(config, pm, infos)
    try:
        ds = ct_dataset("1.2.3", "1.2.3.4", 1, rows=8, columns=8)
        ds.WindowCenter, ds.WindowWidth = 0, 100
        pixels = render(box, ds)
        assert pixels.shape == (8, 8) and pixels.dtype == np.uint8
        pm.register(Renderer(), name="renderer")
        assert (render(box, ds) == 7).all()
    finally:
        box.close()


def test_login_page_for_api_docs_is_never_a_cdn(web, viewer):
    for path in ("/docs", "/redoc"):
        assert viewer.get(path).status_code == 404
    assert "cdn" not in viewer.get("/api").text.lower()


def test_https_when_a_certificate_is_configured(make_box, tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "web.crt", tmp_path / "web.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    box = make_box(web_config(web=f'certificate = "{cert_file}"\nkey = "{key_file}"\n'))
    add_user(box, "otto", "operator")
    url = web_url(box)
    assert url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=url, verify=False) as client:
        answer = client.post("/api/login", json={"name": "otto", "password": PASSWORD})
        assert answer.status_code == 200
        assert "secure" in answer.headers["set-cookie"].lower()
        assert answer.headers["strict-transport-security"].startswith("max-age=")
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https:", "http:") + "/login", timeout=5)
