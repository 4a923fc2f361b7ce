from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.support.boxproc import RunningBox


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"peer tools not installed: {', '.join(missing)} (make test installs them)")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[RunningBox]:
    with RunningBox(tmp_path / "var") as running:
        yield running


@pytest.fixture
def make_box(tmp_path: Path) -> Iterator:
    """Start a box with a configuration of the test's choosing."""
    started: list[RunningBox] = []

    def start(config: str = "", name: str = "var", workers: int = 2) -> RunningBox:
        running = RunningBox(tmp_path / name, config, workers=workers).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def sample_file(name: str) -> Path:
    return Path(get_testdata_file(name))
