"""A plugin for the fault tests that ends the box at one exact point: right after an
instance's index row (and with it its route jobs) is committed, before the instance is
answered. It is a real plugin, found through the ``dicombox`` entry-point group on the
PYTHONPATH the test gives the box, and it acts in the ``dicombox_on_stored`` hook, which
the core calls at that point.

The test orders a death by writing a file named after the SOP Instance UID into the
folder ``DICOMBOX_TEST_DEATHS`` names; the file says how:

- ``worker``: that network worker ends (``os._exit``); the box goes on.
- ``box``: the supervisor is killed (SIGKILL), then the worker ends: the whole box.
- ``worker after forward``: the worker ends once a forward job holding the instance is
  done (the instance has already reached its archive).

Each order is carried out once (its file is removed first).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FOLDER_VARIABLE = "DICOMBOX_TEST_DEATHS"
MODULE = "dicombox_test_deaths"

SOURCE = """
import os
import signal
import time
from pathlib import Path

from dicombox.core import hookimpl

__version__ = "1.0"


@hookimpl(trylast=True)  # after every other plugin's work on the stored instance
def dicombox_on_stored(box, instance, dataset):
    folder = os.environ.get("DICOMBOX_TEST_DEATHS")
    order = Path(folder) / instance.sop_instance_uid if folder else None
    if order is None or not order.exists():
        return
    how = order.read_text().strip()
    order.unlink()
    if how == "worker after forward":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _forwarded(box, instance.sop_instance_uid):
            time.sleep(0.05)
    if how == "box":
        os.kill(os.getppid(), signal.SIGKILL)
    os._exit(70)


def _forwarded(box, uid):
    return any(
        j.kind == "forward" and uid in j.payload.get("items", [])
        for j in box.jobs.list(states=("done",))
    )
"""


def install(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the plugin found by the boxes this test starts; returns the folder where
    orders go."""
    site = folder / "site"
    info = site / f"{MODULE}-1.0.dist-info"
    info.mkdir(parents=True)
    (site / f"{MODULE}.py").write_text(SOURCE)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dicombox-test-deaths\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[dicombox]\ntest-deaths = {MODULE}\n")
    orders = folder / "deaths"
    orders.mkdir()
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), path) if p))
    monkeypatch.setenv(FOLDER_VARIABLE, str(orders))
    return orders


def order(orders: Path, sop_instance_uid: str, how: str) -> None:
    """The box dies ``how`` right after this instance's index row is committed."""
    (orders / sop_instance_uid).write_text(how)
