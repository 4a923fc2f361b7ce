"""Peers that hold associations without using them: a data set trickled in a byte at a
time, and one host opening association after association. The box cuts off the
trickle once a window passes under the minimum rate (``min_data_rate``), keeps each
host to its share of the slots (``max_associations_per_host``), and goes on answering
other hosts; a slow but steady sender still gets through.

Loopback has every address of 127/8 on Linux, so clients bound to 127.0.0.x are so many
hosts. Windows are a second or so here; the defaults are ten."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicombox.core.net import commands, pdu
from tests.support import rawclient
from tests.support.boxproc import RunningBox
from tests.support.faults import Instance, index_paths, make_study, wait_for

QUIET = '[web]\nlisten = ""\n'  # no console: port 8080 may be taken on a test machine
VERIFICATION = "1.2.840.10008.1.1"
LOCAL_LIMIT = (2, 3, 2)  # rejected-transient, presentation provider, local limit exceeded


def network(**keys: object) -> str:
    lines = [f"{k} = {v}" for k, v in {"network_timeout_s": 60, "dimse_timeout_s": 60,
                                         **keys}.items()]  # fmt: skip
    return QUIET + "[network]\n" + "\n".join(lines) + "\n"


@dataclass
class Association:
    sock: socket.socket
    pdu_type: int
    body: bytes

    @property
    def accepted(self) -> bool:
        return self.pdu_type == pdu.A_ASSOCIATE_AC

    def rejection(self) -> tuple[int, int, int]:
        assert self.pdu_type == pdu.A_ASSOCIATE_RJ, f"PDU type {self.pdu_type} is no rejection"
        return self.body[1], self.body[2], self.body[3]


def associate(port: int, source: str, abstract_syntax: str = CTImageStorage) -> Association:
    sock = rawclient.connect(port, timeout=30, source=source)
    sock.sendall(rawclient.associate_rq(abstract_syntax, ExplicitVRLittleEndian))
    pdu_type, body = rawclient.read_pdu(sock)
    return Association(sock, pdu_type, body)


def echo_from(port: int, source: str) -> int | tuple[int, int, int]:
    """A C-ECHO from ``source``: its status, or the association's rejection."""
    association = associate(port, source, VERIFICATION)
    if not association.accepted:
        association.sock.close()
        return association.rejection()
    command = commands.encode_command(
        CommandField=commands.C_ECHO_RQ,
        MessageID=1,
        CommandDataSetType=commands.NO_DATASET,
        AffectedSOPClassUID=VERIFICATION,
    )
    association.sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0])
    pdu_type, body = rawclient.read_pdu(association.sock)
    assert pdu_type == pdu.P_DATA_TF
    rawclient.release(association.sock)
    return int(commands.decode_command(body[6:]).Status)


class Sender:
    """Sends one C-STORE on an open association at a chosen pace, on its own thread:
    the command at once, then the data set in one P-DATA-TF, ``piece`` bytes every
    ``gap_s``. ``ended`` says how the box answered: a status, or "aborted"/"closed"."""

    def __init__(self, sock: socket.socket, inst: Instance, piece: int, gap_s: float) -> None:
        self.sock, self.inst, self.piece, self.gap_s = sock, inst, piece, gap_s
        self.ended: int | str | None = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sender:
        self.thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        data = self.inst.data
        command = rawclient.store_command(CTImageStorage, self.inst.sop_instance_uid)
        header = struct.pack(">BBIIBB", pdu.P_DATA_TF, 0, len(data) + 6, len(data) + 2, 1, 2)
        try:
            self.sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0] + header)
            for at in range(0, len(data), self.piece):
                self.sock.sendall(data[at : at + self.piece])
                time.sleep(self.gap_s)
        except OSError:
            pass  # the box closed the connection under the sender: read what it said
        try:
            pdu_type, body = rawclient.read_pdu(self.sock)
            if pdu_type == pdu.P_DATA_TF:
                self.ended = int(commands.decode_command(body[6:]).Status)
            else:
                self.ended = "aborted" if pdu_type == pdu.A_ABORT else f"PDU {pdu_type}"
        except OSError:
            self.ended = "closed"
        self.seconds = time.monotonic() - started

    def join(self, timeout: float) -> int | str | None:
        self.thread.join(timeout)
        return self.ended


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_a_trickled_data_set_is_aborted_within_the_rate_window_and_logged(make_box):
    box: RunningBox = make_box(network(min_data_rate=1000, data_rate_window_s=1))
    inst = make_study(1)[0]
    association = associate(box.port, "127.0.0.1")
    assert association.accepted
    # A byte every 0.2 s: each well within dimse_timeout_s (60 s), 5 bytes a second
    # against the 1000 asked.
    trickle = Sender(association.sock, inst, piece=1, gap_s=0.2).start()
    assert trickle.join(30) in ("aborted", "closed")
    association.sock.close()
    assert trickle.seconds < 10  # the window (1 s), not the timeout (60 s), cut it off
    wait_for(lambda: "too slow" in box.output(), 10, "the abort to be logged")
    line = next(x for x in box.output().splitlines() if "too slow" in x)
    assert "WARNING" in line and "RAWSCU@127.0.0.1:" in line and "aborted after" in line
    assert "under the minimum of 1000" in line
    assert inst.sop_instance_uid not in index_paths(box.data_dir)  # nothing half kept
    assert echo_from(box.port, "127.0.0.1") == 0


def test_a_slow_but_steady_sender_gets_its_data_set_stored(make_box):
    box: RunningBox = make_box(network(min_data_rate=1000, data_rate_window_s=1))
    inst = make_study(1, rows=96, columns=96)[0]  # about 20 kB
    association = associate(box.port, "127.0.0.1")
    assert association.accepted
    # 1 kB every 0.1 s: ten times the minimum, over several windows.
    steady = Sender(association.sock, inst, piece=1000, gap_s=0.1).start()
    assert steady.join(60) == 0
    assert steady.seconds > 1.5  # it did span windows
    rawclient.release(association.sock)
    assert inst.sop_instance_uid in index_paths(box.data_dir)
    assert "too slow" not in box.output()


def test_one_host_gets_its_share_of_the_slots_and_another_host_gets_in(make_box, sockets):
    # Tricklers that the rate rule would not cut off for a minute: only the host limit
    # keeps them from taking every slot.
    box: RunningBox = make_box(
        network(max_associations=12, max_associations_per_host=4, data_rate_window_s=60)
    )
    answers = []
    for _ in range(12):
        association = associate(box.port, "127.0.0.1")
        sockets.append(association.sock)
        answers.append(association)
        if association.accepted:
            Sender(association.sock, make_study(1)[0], piece=1, gap_s=0.5).start()
    assert [a.accepted for a in answers] == [True] * 4 + [False] * 8
    assert {a.rejection() for a in answers[4:]} == {LOCAL_LIMIT}
    assert echo_from(box.port, "127.0.0.2") == 0  # another host is still answered
    assert echo_from(box.port, "127.0.0.1") == LOCAL_LIMIT

    def refusals() -> list[str]:
        return [x for x in box.output().splitlines() if "max_associations_per_host" in x]

    wait_for(lambda: len(refusals()) == 9, 30, "each refusal to be logged")
    assert all("WARNING" in x and "127.0.0.1 already holds 4 associations" in x for x in refusals())


def test_twelve_tricklers_from_twelve_hosts_are_cut_off_and_the_box_answers_again(
    make_box, sockets
):
    box: RunningBox = make_box(network(min_data_rate=1000, data_rate_window_s=1))
    held = []
    for n in range(10, 22):  # every slot (max_associations = 12), one host each
        association = associate(box.port, f"127.0.0.{n}")
        sockets.append(association.sock)
        held.append(association)
    assert all(a.accepted for a in held)
    assert echo_from(box.port, "127.0.0.2") == LOCAL_LIMIT  # the box is full
    tricklers = [Sender(a.sock, make_study(1)[0], piece=1, gap_s=0.5).start() for a in held]
    assert [t.join(30) in ("aborted", "closed") for t in tricklers] == [True] * 12
    wait_for(lambda: echo_from(box.port, "127.0.0.2") == 0, 30, "a C-ECHO to be answered")
    aborts = [x for x in box.output().splitlines() if "too slow" in x]
    assert {re.search(r"@(127\.0\.0\.\d+):", x).group(1) for x in aborts} == {  # type: ignore[union-attr]
        f"127.0.0.{n}" for n in range(10, 22)
    }
