"""The web console of a running box, for tests: its address, its users, a signed-in
HTTP client, and studies to look at."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from pydicom.uid import generate_uid

from tests.support.boxproc import RunningBox
from tests.support.peers import storescu
from tests.support.synthetic import ct_dataset

PASSWORD = "correct horse battery"


def web_config(discs: Path | None = None, web: str = "", media: str = "", extra: str = "") -> str:
    """A configuration with the console on a free port, the simulated burner's discs in
    ``discs``, more keys of [web] and [media], and ``extra`` sections."""
    discs_key = f'discs_dir = "{discs}"\n' if discs else ""
    return f'[web]\nlisten = "127.0.0.1:0"\n{web}[media]\n{discs_key}{media}{extra}'


def web_url(box: RunningBox, timeout: float = 10) -> str:
    """Where the box's console listens (it writes web.json once it does)."""
    info = box.data_dir / "run" / "web.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info.exists():
            return str(json.loads(info.read_text())["url"])
        time.sleep(0.05)
    raise AssertionError(f"the console did not start:\n{box.output()[-2000:]}")


def add_user(box: RunningBox, name: str, role: str, password: str = PASSWORD) -> None:
    """``dicombox web user add NAME --role ROLE --password-stdin``."""
    done = subprocess.run(
        [sys.executable, "-m", "dicombox.core.cli", "--config", str(box.config),
         "--data-dir", str(box.data_dir), "web", "user", "add", name, "--role", role,
         "--password-stdin"],
        input=password + "\n", capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def signed_in(url: str, name: str, password: str = PASSWORD) -> httpx.Client:
    """A client with a session whose CSRF token it sends with every request."""
    client = httpx.Client(base_url=url, timeout=30)
    answer = client.post("/api/login", json={"name": name, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


def phantom(rows: int, columns: int, number: int) -> bytes:
    """CT pixels (stored values, HU + 1024) of a body-shaped phantom: soft tissue, two
    lungs, a bony ring and a lesion that moves from slice to slice, so that thumbnails
    show something a person recognises."""
    y, x = np.mgrid[0:rows, 0:columns]
    u, v = (x - columns / 2) / (columns / 2), (y - rows / 2) / (rows / 2)
    hu = np.full((rows, columns), -1000.0)
    body = (u / 0.9) ** 2 + (v / 0.7) ** 2
    hu[body < 1] = 40
    hu[(body > 0.85) & (body < 1)] = 700
    for side in (-0.38, 0.38):
        hu[((u - side) / 0.28) ** 2 + (v / 0.45) ** 2 < 1] = -800
    lesion = (u - 0.3 + 0.1 * number) ** 2 + (v + 0.2) ** 2 < 0.012
    hu[lesion] = 120
    noise = np.random.default_rng(number).normal(0, 12, (rows, columns))
    return np.clip(hu + noise + 1024, 0, 4095).astype(np.uint16).tobytes()


def store_study(
    box: RunningBox,
    folder: Path,
    patient: str = "DOE^JANE",
    patient_id: str = "P1",
    date: str = "20260320",
    count: int = 4,
    rows: int = 48,
    columns: int = 64,
) -> str:
    """Send a ``count``-image CT study with storescu; returns its Study Instance UID."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(1, count + 1):
        ds = ct_dataset(study, series, n, rows=rows, columns=columns, patient=patient,
                        patient_id=patient_id)  # fmt: skip
        ds.StudyDate = date
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = phantom(rows, columns, n)
        path = folder / f"{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    sent = storescu(box.port, files)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    return study


def wait_job(client: httpx.Client, job: int, state: str, timeout: float = 60) -> dict:
    """The job, once the API shows it in ``state``."""
    deadline = time.monotonic() + timeout
    seen: dict = {}
    while time.monotonic() < deadline:
        seen = client.get(f"/api/jobs/{job}").json()
        if seen.get("state") == state:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"job {job} not {state}: {seen}")


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: dict[str, str]

    def json(self) -> object:
        return json.loads(self.text)


class UrlClient:
    """Plain urllib against the console: a session (cookie jar, CSRF token sent with
    every form and request) once ``login`` is called, or HTTP Basic credentials. Redirects
    are followed, as a browser follows them after a form."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.csrf = ""
        self.basic = ""
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def login(self, name: str, password: str = PASSWORD) -> UrlClient:
        answer = self.request("POST", "/api/login", {"name": name, "password": password})
        assert answer.status == 200, answer.text
        self.csrf = str(answer.json()["csrf_token"])  # type: ignore[index]
        return self

    def with_basic(self, name: str, password: str = PASSWORD) -> UrlClient:
        self.basic = base64.b64encode(f"{name}:{password}".encode()).decode()
        return self

    def get(self, path: str, params: dict[str, str] | None = None) -> Answer:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self.request("GET", path + query)

    def post_form(self, path: str, fields: dict[str, str]) -> Answer:
        """A console form, with the session's token in its csrf_token field."""
        body = urllib.parse.urlencode({**fields, "csrf_token": self.csrf}).encode()
        kind = "application/x-www-form-urlencoded"
        return self.request("POST", path, body=body, content_type=kind)

    def request(
        self,
        method: str,
        path: str,
        data: object = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        if data is not None:
            body = json.dumps(data).encode()
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        if self.csrf:
            request.add_header("X-CSRF-Token", self.csrf)
        if self.basic:
            request.add_header("Authorization", f"Basic {self.basic}")
        try:
            with self.opener.open(request, timeout=30) as response:
                text = response.read().decode()
                return Answer(response.status, text, dict(response.headers))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode(), dict(error.headers))
