"""Permissions per remote AE, against DCMTK peers: a caller may use only the services its
[[remote]] names (status 0124 Refused: Not Authorized otherwise, nothing kept, audited
once), C-MOVE only to its move destinations, and a caller that is no [[remote]] only
``unknown_caller_services``."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicombox.core.config import parse_config
from dicombox.core.net.policy import AssociationPolicy
from tests.conftest import require
from tests.support.boxproc import RunningBox, run_cli
from tests.support.peers import free_port, popen, run, storescu
from tests.support.synthetic import ct_dataset

STUDY = generate_uid()


@pytest.fixture(scope="module")
def locked_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBox]:
    """A box where the modality may only store (and do its worklist), the viewer may only
    query and retrieve, to itself, and strangers may only store."""
    require("storescu", "findscu", "movescu", "getscu", "storescp", "echoscu")
    root = tmp_path_factory.mktemp("permissions")
    viewer_port = free_port()
    config = f"""
[network]
unknown_caller_services = ["store"]

[[remote]]
name = "modality"
ae_title = "MODALITY"
host = "127.0.0.1"
port = {free_port()}
services = ["store", "worklist", "mpps"]

[[remote]]
name = "viewer"
ae_title = "VIEWER"
host = "127.0.0.1"
port = {viewer_port}
services = ["query", "move", "get"]
move_destinations = ["VIEWER"]

[[remote]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = {free_port()}
"""
    box = RunningBox(root / "var", config).start()
    box.viewer_port = viewer_port  # type: ignore[attr-defined]
    yield box
    box.stop()


def write_study(directory: Path, study: str, count: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    paths = []
    for n in range(1, count + 1):
        path = directory / f"ct{n}.dcm"
        ct_dataset(study, series, n, rows=32, columns=32).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def find_study(box: RunningBox, calling_ae: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            "findscu",
            "-v",
            "-S",
            "-aet",
            calling_ae,
            "-aec",
            "DICOMBOX",
            "127.0.0.1",
            box.port,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={STUDY}",
            "-k",
            "PatientName",
        ]
    )


def says_not_authorized(output: str) -> bool:
    """DCMTK names status 0124 (PS3.7 C.5: Refused: Not Authorized) by number only."""
    return re.search(r"\b0x0?124\b", output) is not None


def refusals(box: RunningBox, **match: str) -> list[dict]:
    """The audit trail's refusals with these fields, once there is one (the supervisor
    writes what the workers relay, a moment later)."""
    path = box.data_dir / "audit" / "audit.jsonl"
    deadline = time.monotonic() + 10
    while True:
        records = map(json.loads, path.read_text().splitlines()) if path.exists() else []
        found = [
            r
            for r in records
            if r.get("permission") and all(r.get(k) == v for k, v in match.items())
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def stored_uids(box: RunningBox) -> set[str]:
    listing = box.cli("studies", "--json")
    return {s["study_instance_uid"] for s in json.loads(listing.stdout)}


@pytest.fixture(scope="module")
def stored(locked_box: RunningBox, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The modality stores a study of three images; that it may."""
    files = write_study(tmp_path_factory.mktemp("study"), STUDY, 3)
    result = storescu(locked_box.port, files, aet="MODALITY")
    assert result.returncode == 0, result.stderr
    return files


def test_a_store_only_modality_stores_but_may_not_query(locked_box, stored):
    assert STUDY in stored_uids(locked_box)
    result = find_study(locked_box, "MODALITY")
    out = result.stdout + result.stderr
    assert says_not_authorized(out), out
    assert "CT^PHANTOM" not in out.upper()
    alerts = refusals(locked_box, calling_ae="MODALITY")
    assert [(a["permission"], a["command"]) for a in alerts] == [("query", "C-FIND-RQ")]


def test_a_viewer_may_query_but_not_store_and_nothing_of_its_images_is_kept(
    locked_box, stored, tmp_path
):
    result = find_study(locked_box, "VIEWER")
    assert STUDY in result.stdout + result.stderr
    other = generate_uid()
    files = write_study(tmp_path / "viewer", other, 4)
    result = storescu(locked_box.port, files, aet="VIEWER", extra=["-v"])
    out = result.stdout + result.stderr
    assert says_not_authorized(out), out
    assert other not in stored_uids(locked_box)
    assert not [p for p in (locked_box.data_dir / "store").rglob("*") if other in str(p)]
    # four refused images are one alert, not four
    alerts = refusals(locked_box, calling_ae="VIEWER", permission="store")
    assert [(a["permission"], a["command"]) for a in alerts] == [("store", "C-STORE-RQ")]


def test_a_viewer_may_move_to_itself_only(locked_box, stored, tmp_path):
    received = tmp_path / "received"
    received.mkdir()
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}"]
    storescp = popen(
        ["storescp", "-aet", "VIEWER", "-od", received, locked_box.viewer_port],
    )
    try:
        move = ["movescu", "-v", "-S", "-aet", "VIEWER", "-aec", "DICOMBOX"]
        refused = run([*move, "-aem", "ARCHIVE", "127.0.0.1", locked_box.port, *keys])
        out = refused.stdout + refused.stderr
        assert says_not_authorized(out), out
        allowed = run([*move, "-aem", "VIEWER", "127.0.0.1", locked_box.port, *keys])
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    finally:
        storescp.terminate()
        storescp.wait()
    assert len(list(received.iterdir())) == 3
    moves = refusals(locked_box, permission="move")
    assert len(moves) == 1 and "ARCHIVE" in moves[0]["why"]


def test_c_get_needs_its_own_permission(locked_box, stored, tmp_path):
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}"]
    for caller, expected in (("MODALITY", 0), ("VIEWER", 3)):
        out_dir = tmp_path / caller
        out_dir.mkdir()
        result = run(
            [
                "getscu",
                "-v",
                "-S",
                "-aet",
                caller,
                "-aec",
                "DICOMBOX",
                "-od",
                out_dir,
                "127.0.0.1",
                locked_box.port,
                *keys,
            ]
        )
        assert len(list(out_dir.iterdir())) == expected, result.stdout + result.stderr
    alerts = refusals(locked_box, permission="get")
    assert [a["calling_ae"] for a in alerts] == ["MODALITY"]


def test_a_stranger_may_echo_and_store_but_not_query(locked_box, tmp_path):
    assert (
        run(
            ["echoscu", "-aet", "STRANGER", "-aec", "DICOMBOX", "127.0.0.1", locked_box.port]
        ).returncode
        == 0
    )
    study = generate_uid()
    files = write_study(tmp_path / "stranger", study, 1)
    assert storescu(locked_box.port, files, aet="STRANGER").returncode == 0
    assert study in stored_uids(locked_box)
    out = find_study(locked_box, "STRANGER")
    assert says_not_authorized(out.stdout + out.stderr)


@pytest.mark.parametrize(
    ("remote", "error"),
    [
        ('services = ["store", "search"]', "services has 'search'; expected some of store, query"),
        ('move_destinations = ["NOBODY"]', "move_destinations has 'NOBODY'"),
    ],
)
def test_config_check_names_a_bad_permission(tmp_path, remote, error):
    config = tmp_path / "box.toml"
    config.write_text(
        f'[[remote]]\nname = "x"\nae_title = "X"\nhost = "127.0.0.1"\nport = 104\n{remote}\n'
    )
    result = run_cli("config", "check", str(config))
    assert result.returncode != 0
    assert error in result.stdout + result.stderr


def test_the_earlier_name_find_still_means_query(tmp_path):
    remote = {"name": "x", "ae_title": "X", "host": "127.0.0.1", "port": 104}
    config = parse_config({"remote": [{**remote, "services": ["store", "find"]}]})
    assert AssociationPolicy(config, {"DICOMBOX"}).permissions("X", "127.0.0.1") == {
        "store",
        "query",
    }
