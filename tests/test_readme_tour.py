"""The README's "Trying it" tour, run as written: its box.toml passes `dicombox config
check`, and its commands (ports moved to free ones) store, send, burn, export to a
simulated stick, print, take a film from DCMTK's print SCU and serve the worklist."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import require
from tests.support.boxproc import run_cli
from tests.support.peers import free_port

README = Path(__file__).resolve().parent.parent / "README.md"


def _tour() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Trying it")
    return text[start : text.index("\n## ", start + 1)]


def _heredoc(name: str) -> str:
    """The file the tour writes with ``cat > NAME <<'EOF'``."""
    found = re.search(rf"cat > {re.escape(name)} <<'EOF'\n(.*?\n)EOF\n", _tour(), re.S)
    assert found, f"the tour no longer writes {name}"
    return found.group(1)


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", _tour(), re.S)


def test_the_tour_box_toml_passes_config_check(tmp_path: Path):
    config = tmp_path / "box.toml"
    config.write_text(_heredoc("box.toml"))
    checked = run_cli("config", "check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK (1 remote(s)" in checked.stdout
    assert '[web]\nlisten = "127.0.0.1:8080"' in config.read_text()


def _moved(text: str, box_port: int, pacs_port: int) -> str:
    """The tour's ports moved to free ones. 11112 stays in box.toml: the test's box is
    started on a free port, as `make run ARGS="--config box.toml --port N"` would be."""
    text = text.replace("127.0.0.1:8080", "127.0.0.1:0").replace("11113", str(pacs_port))
    text = text.replace("localhost 11112", f"localhost {box_port}")
    return text.replace("Port = 11112", f"Port = {box_port}")


def test_the_tour_runs_as_written(make_box, tmp_path: Path):
    require("echoscu", "storescu", "findscu", "storescp", "dcmpsprt", "dcmprscu")
    pacs_port = free_port()
    blocks = _blocks()
    assert 'make run ARGS="--config box.toml"' in blocks[1]

    # Step 1 writes box.toml; the test then starts the box on it (step 2, `make run`).
    subprocess.run(["bash", "-euc", _moved(blocks[0], 0, pacs_port)], cwd=tmp_path, check=True)
    box = make_box((tmp_path / "box.toml").read_text())
    assert box.data_dir == tmp_path / "var"  # the tour's ./var, seen from its folder
    script = _moved("".join(blocks[2:]), box.port, pacs_port)
    script = script.replace("$PWD/.venv/bin", str(Path(sys.executable).parent))
    script = script.replace(".venv/bin/python", sys.executable)
    # The password prompt is the one step that needs a person.
    script = "\n".join(line for line in script.splitlines() if "web user add" not in line)
    log = tmp_path / "tour.log"
    with log.open("w") as out:
        # A session of its own, so that the archive the tour leaves running goes with it.
        tour = subprocess.Popen(
            ["bash", "-euc", script],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = tour.wait(timeout=180)
        finally:
            try:
                os.killpg(tour.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    said = log.read_text()
    assert code == 0, said
    assert "box.toml: OK" in said and "CompressedSamples^CT1" in said
    assert "pacs: 1 delivered" in said and len(list((tmp_path / "pacs").iterdir())) == 1
    assert "[A77" in said  # the worklist item, found by findscu -W
    box.wait_job("burn", "done")
    assert len(list((tmp_path / "var/media/discs").glob("*.iso"))) == 1
    assert (tmp_path / "var/media/usb/STICK/DICOMDIR").is_file()
    # The box's own print and the film from DCMTK's print SCU, each a PDF file.
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "var/print/pdf").glob("*.pdf"))) < 2:
        assert time.monotonic() < deadline, box.cli("jobs").stdout
        time.sleep(0.3)
    pdfs = sorted((tmp_path / "var/print/pdf").glob("*.pdf"))
    assert len(pdfs) == 2 and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    assert any(p.name.endswith("-film.pdf") for p in pdfs)
