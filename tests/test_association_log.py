"""Each association the box answers leaves one line in its log when it ends, however it
ends: who called (AE title and address) and whom, what was done, how long it took; a
clean release at INFO, a rejection or a cut-off at WARNING with the reason. Real peers
(DCMTK) do the calling."""

from __future__ import annotations

import re
from pathlib import Path
from subprocess import CompletedProcess

from dicombox.core.net import pdu
from tests.conftest import require
from tests.support import rawclient
from tests.support.boxproc import RunningBox
from tests.support.faults import make_study, wait_for, write_files
from tests.support.peers import run, storescu

QUIET = '[web]\nlisten = ""\n'  # no console: port 8080 may be taken on a test machine
ENDED = r"association \S+ "  # each line begins so, then the caller


def ended(box: RunningBox, caller: str) -> list[str]:
    return [x for x in box.output().splitlines() if re.search(ENDED + re.escape(caller), x)]


def echoscu(port: int, calling: str, called: str) -> CompletedProcess[str]:
    return run(["echoscu", "-aet", calling, "-aec", called, "127.0.0.1", port])


def test_each_association_is_logged_once_when_it_ends(make_box, tmp_path: Path) -> None:
    require("storescu", "findscu", "echoscu")
    box: RunningBox = make_box(QUIET + '[storage]\nduplicates = "reject"\n')
    study = make_study(3, rows=16, columns=16)
    files = write_files(study, tmp_path / "in")
    # Three images and the first again, which duplicates = "reject" refuses (0111).
    storescu(box.port, [*files, files[0]], aet="MODALITY")
    keys = ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study[0].study_instance_uid}",
            "SeriesInstanceUID", "SOPInstanceUID"]  # fmt: skip
    found = run(["findscu", "-S", "-aet", "VIEWER", "-aec", "DICOMBOX",
                 *[a for key in keys for a in ("-k", key)], "127.0.0.1", box.port])  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr
    assert echoscu(box.port, "PING", "DICOMBOX").returncode == 0
    assert echoscu(box.port, "LOST", "NOTUS").returncode != 0
    # A peer that leaves in the middle of a C-STORE.
    sock, _ = rawclient.associate(box.port, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1",
                                  calling="GONE")  # fmt: skip
    command = rawclient.store_command("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4")
    sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0])  # and never its data set
    sock.close()
    wait_for(lambda: ended(box, "GONE@"), 30, "the cut-off association to be logged")

    (stored,) = ended(box, "MODALITY@127.0.0.1:")
    assert re.search(r" INFO .* -> DICOMBOX released after \d+\.\d s: "
                     r"C-STORE 3 success, 1 failed$", stored), stored  # fmt: skip
    (query,) = ended(box, "VIEWER@127.0.0.1:")
    assert re.search(r" INFO .* -> DICOMBOX released after \d+\.\d s: "
                     r"C-FIND 1 success, 3 matches$", query), query  # fmt: skip
    (ping,) = ended(box, "PING@127.0.0.1:")
    assert re.search(r" INFO .*: C-ECHO 1 success$", ping), ping
    (lost,) = ended(box, "LOST@127.0.0.1:")
    assert re.search(r" WARNING .* -> NOTUS rejected after \d+\.\d s "
                     r"\(called AE 'NOTUS' is none of ours", lost), lost  # fmt: skip
    (gone,) = ended(box, "GONE@127.0.0.1:")
    assert re.search(r" WARNING .* -> DICOMBOX aborted after \d+\.\d s "
                     r"\(peer went away .*\): C-STORE 1 unanswered$", gone), gone  # fmt: skip
