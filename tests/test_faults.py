"""Faults: the box killed (SIGKILL, every process at once) in a C-STORE burst, in a burn,
in a forward and inside an index write; a full disk mid-study; peers that stall, abort
or vanish mid-PDU; 64 associations at once.

After each, nothing the box acknowledged is missing or altered by a byte, nothing
half-written is indexed or left behind, and queued jobs resume and finish.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import CTImageStorage

from dicombox.core.audit import AuditTrail
from dicombox.core.events import Event
from dicombox.core.net import pdu
from dicombox.core.store import InstanceStore
from dicombox.plugins.storage.forward_record import RECORD_EVERY
from tests.conftest import require
from tests.support import fault_plugin, rawclient
from tests.support.boxproc import RunningBox
from tests.support.faults import (
    Instance,
    Tally,
    after_meta,
    associate,
    burst,
    echo,
    frozen,
    index_paths,
    jobs_of,
    join_all,
    kill_inside_index_write,
    kill_when,
    loss,
    make_study,
    outbox_rows,
    partial_files,
    send_all,
    store,
    store_problems,
    tmp_leftovers,
    unindexed_files,
    wait_for,
)
from tests.support.peers import free_port, popen, run

QUIET = '[web]\nlisten = ""\n'  # no console: port 8080 may be taken on a test machine
SHORT_TIMEOUTS = "[network]\nacse_timeout_s = 2\ndimse_timeout_s = 2\nnetwork_timeout_s = 2\n"


def seeded() -> tuple[random.Random, int]:
    """A random source whose seed ends up in the failure message, to replay a run."""
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")  # pytest shows it with a failure
    return random.Random(seed), seed


def assert_intact(box: RunningBox, acknowledged: dict[str, Instance]) -> None:
    """Nothing acknowledged is missing or altered; store and index agree."""
    assert loss(box.data_dir, acknowledged) == []
    assert store_problems(box.data_dir) == []


# ------------------------------------------------------------------- kill -9: ingest
def test_kill_during_a_store_burst_loses_nothing_acknowledged(make_box):
    rng, seed = seeded()
    box = make_box(QUIET)
    study = make_study(150, rows=64, columns=64)
    kill_after = rng.randint(10, 100)
    tally = Tally()
    senders = burst(box.port, study, 3, tally)
    wait_for(lambda: tally.count >= kill_after, 120, f"{kill_after} acknowledgements")
    box.kill()
    join_all(senders)
    acknowledged = dict(tally.acknowledged)
    assert len(tally.broken) == 3, f"the kill did not cut every association (seed {seed})"
    assert len(acknowledged) < len(study)

    box.start()
    assert_intact(box, acknowledged)
    indexed = set(index_paths(box.data_dir))
    # Instances placed but never answered may be there too (re-indexed from the store,
    # whole); nothing else is.
    assert acknowledged.keys() <= indexed <= {i.sop_instance_uid for i in study}
    # The modality sends the study again: all of it is taken, each instance once.
    again = Tally()
    send_all(box.port, study, again)
    assert again.refused == {} and again.broken == []
    assert len(index_paths(box.data_dir)) == len(study)
    assert_intact(box, {i.sop_instance_uid: i for i in study})


def test_kill_inside_index_writes_repeatedly_keeps_index_and_store_in_step(make_box):
    rng, seed = seeded()
    box = make_box(QUIET)
    acknowledged: dict[str, Instance] = {}
    for round_ in range(4):
        tally, kill_after = Tally(), rng.randint(5, 150)
        senders = burst(box.port, make_study(400, rows=16, columns=16), 2, tally)
        # Somewhere in the burst, then at the next instant a worker is writing the index.
        wait_for(lambda t=tally, n=kill_after: t.count >= n, 120, "the burst to get going")
        kill_inside_index_write(box)
        join_all(senders)
        assert len(tally.broken) == 2, f"round {round_}: the burst ended before the kill ({seed})"
        acknowledged |= tally.acknowledged
        box.start()
        # WAL: the interrupted transaction is gone whole, every committed one is there.
        assert_intact(box, acknowledged)
    send_all(box.port, make_study(5, rows=16, columns=16), tally := Tally())
    assert tally.count == 5  # and it goes on taking more


# ---------------------------------------------------------------------- kill -9: jobs
def test_kill_during_a_burn_resumes_it_and_the_disc_is_whole(make_box, tmp_path):
    require("xorriso")
    discs = tmp_path / "discs"
    box = make_box(f'{QUIET}[media]\ndiscs_dir = "{discs}"\nretries = 3\n')
    study = make_study(60, rows=512, columns=512, patient="DISC^DORA")
    send_all(box.port, study, tally := Tally())
    assert tally.count == len(study)
    assert box.cli("burn", study[0].study_instance_uid).returncode == 0

    # Killed while the disc is being written (the simulator writes it as a .part file
    # first): past the file-set and the ISO image, before the last chunk.
    kill_when(box, lambda: list(discs.glob("*.part")), 180, "the burn to write the disc")
    (job,) = jobs_of(box.data_dir, "burn")
    assert job["state"] == "running"

    box.start()
    done = box.wait_job("burn", "done", timeout=180)
    # Run again after the kill, which gave back the try it cut short: one try counted.
    assert done["attempts"] == 1 and "60 instances burned, 1 disc(s)" in done["progress"], done
    (iso,) = discs.glob("disc-*.iso")  # one disc; the half-written one was written anew
    assert not list(discs.glob("*.part"))
    assert not list((box.data_dir / "tmp").glob("scratch-*"))
    out = tmp_path / "extracted"
    extracted = run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out])
    assert extracted.returncode == 0, extracted.stderr
    on_disc = {str(i.SOPInstanceUID): i.load() for i in FileSet(out / "DICOMDIR")}
    assert set(on_disc) == {i.sop_instance_uid for i in study}
    for inst in study:
        sent = pydicom.dcmread(io.BytesIO(inst.data), force=True)
        assert on_disc[inst.sop_instance_uid].PixelData == sent.PixelData


@pytest.fixture
def archive(tmp_path) -> Iterator:
    """DCMTK storescp (options of the test's choosing) writing into one folder; yields
    a starter that returns the process; stops whatever is still running at the end."""
    require("storescp")
    started: list[subprocess.Popen] = []
    out = tmp_path / "archive"
    out.mkdir()

    def start(port: int, *options: str) -> subprocess.Popen:
        proc = popen(["storescp", "-aet", "ARCHIVE", *options, "-od", out, str(port)])
        started.append(proc)
        wait_for(lambda: listening(port), 30, "storescp to listen")
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def received(folder: Path) -> dict[str, Path]:
    found = {}
    for path in folder.iterdir():
        try:
            found[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
        except Exception:
            continue  # storescp is still writing it
    return found


def forwarding_box(make_box, port: int) -> RunningBox:
    return make_box(
        f'{QUIET}[[remote]]\nname = "pacs"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\n'
        f"port = {port}\nretry_delay_s = 1\n"
        '[storage]\nforward_delay_s = 1\n[[route]]\nwhen = {}\nforward = ["pacs"]\n'
    )


def forwards_settled(box: RunningBox) -> bool:
    jobs = jobs_of(box.data_dir, "forward")
    settled = bool(jobs) and all(j["state"] in ("done", "failed") for j in jobs)
    return settled and not outbox_rows(box.data_dir)  # no route job still to queue


def test_kill_during_a_forward_resumes_it_and_everything_arrives(make_box, archive, tmp_path):
    port = free_port()
    # A slow archive first (storescp sleeps a second after each image), so the kill
    # lands mid-forward whatever the machine's speed.
    slow = archive(port, "--sleep-after", "1")
    out = tmp_path / "archive"
    box = forwarding_box(make_box, port)
    study = make_study(40, rows=64, columns=64)
    send_all(box.port, study, tally := Tally())
    assert tally.count == len(study)
    wait_for(lambda: len(list(out.iterdir())) >= 2, 120, "the forward to get going")
    box.kill()
    assert len(list(out.iterdir())) < len(study)
    assert "running" in [j["state"] for j in jobs_of(box.data_dir, "forward")]

    # The archive comes back at full speed on the same port, and so does the box.
    slow.terminate()
    slow.wait()
    archive(port)
    box.start()
    wait_for(lambda: forwards_settled(box), 120, "the forward to finish")
    assert {j["state"] for j in jobs_of(box.data_dir, "forward")} == {"done"}
    got = received(out)
    assert set(got) == {i.sop_instance_uid for i in study}
    assert len(list(out.iterdir())) == len(study)  # a re-sent image replaced its file
    for inst in study:
        assert after_meta(got[inst.sop_instance_uid].read_bytes()) == inst.data


def test_an_instance_cut_off_before_its_index_row_is_still_forwarded(make_box, archive, tmp_path):
    # A file in its place that the index does not list while a worker writes the index
    # is the one instance in flight, its row not yet committed. The restart indexes it
    # from the store and runs its routes.
    assert_forwarded_after_a_kill(
        make_box, archive, tmp_path, lambda data_dir: bool(unindexed_files(data_dir))
    )


DEATHS = 20  # of which every tenth kills the whole box, the others one network worker


def test_deaths_between_an_instance_row_and_its_answer_leave_its_routes_queued_once(
    make_box, tmp_path, monkeypatch
):
    """The box dies again and again right after an instance's index row is committed,
    before its answer (a plugin ends the worker, or the whole box, at that point):
    every instance the box holds, every acknowledged one among them, has its route jobs
    queued, each once, whether the worker died alone or the box restarted and
    reconciled its store."""
    orders = fault_plugin.install(tmp_path, monkeypatch)
    box = make_box(
        f'{QUIET}[[remote]]\nname = "pacs"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\n'
        f"port = {free_port()}\n"  # nobody there; the forwards wait an hour anyway
        "[storage]\nforward_delay_s = 3600\n[media]\nidle_s = 3600\n"
        '[[route]]\nwhen = {}\nforward = ["pacs"]\n[[route]]\nwhen = {}\nburn = true\n',
        workers=4,  # while the supervisor replaces a dead one, the others take the next
    )
    study = make_study(DEATHS * 3, rows=8, columns=8)
    acknowledged = Tally()
    for death in range(DEATHS):
        whole_box = death % 10 == 9
        chunk = study[death * 3 : death * 3 + 3]
        fault_plugin.order(orders, chunk[1].sop_instance_uid, "box" if whole_box else "worker")
        assert send_all(box.port, chunk, acknowledged), "the box did not die"
        assert chunk[1].sop_instance_uid not in acknowledged.acknowledged
        if whole_box:
            assert box.proc is not None
            box.proc.wait(30)
            box.start(timeout=120)
        # The modality sends again what got no answer: a duplicate, kept first.
        again = [i for i in chunk if i.sop_instance_uid not in acknowledged.acknowledged]
        assert send_all(box.port, again, acknowledged) == ""
        assert acknowledged.count == death * 3 + 3
        assert_routes_queued_once(box, acknowledged, study[0].study_instance_uid)
    assert_intact(box, acknowledged.acknowledged)


def assert_routes_queued_once(box: RunningBox, acknowledged: Tally, study: str) -> None:
    """Every instance the box holds (the acknowledged ones, no other) is in one forward
    job once, and its study has one burn job, once the supervisor has queued them."""
    wait_for(lambda: not outbox_rows(box.data_dir), 30, "the route jobs to be queued")
    held = set(index_paths(box.data_dir))
    assert held == set(acknowledged.acknowledged)
    forwarded = [uid for job in jobs_of(box.data_dir, "forward") for uid in job_items(job)]
    assert sorted(forwarded) == sorted(held), "an instance forwarded twice, or never"
    burns = [json.loads(job["payload"])["group"] for job in jobs_of(box.data_dir, "burn")]
    assert burns == [study]


def job_items(job: dict) -> list[str]:
    return json.loads(job["payload"])["items"]


def test_a_worker_dying_after_its_instance_was_forwarded_sends_it_no_second_time(
    make_box, archive, tmp_path, monkeypatch
):
    """The worker that stored an instance dies before answering it, by which time the
    instance's forward has already reached the archive. Nothing runs its routes again:
    they went into the index with its row, so the archive receives it once."""
    orders = fault_plugin.install(tmp_path, monkeypatch)
    port = free_port()
    archive(port, "+uf")  # a file per reception: an image received twice is two files
    box = make_box(
        f'{QUIET}[[remote]]\nname = "pacs"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\n'
        f"port = {port}\nretry_delay_s = 1\n"
        '[storage]\nforward_delay_s = 0\n[[route]]\nwhen = {}\nforward = ["pacs"]\n'
    )
    study = make_study(6, rows=8, columns=8)
    fault_plugin.order(orders, study[2].sop_instance_uid, "worker after forward")
    assert send_all(box.port, study, tally := Tally()), "the worker did not die"
    assert tally.count == 2
    assert send_all(box.port, study[2:], tally) == ""  # the victim again is a duplicate
    wait_for(lambda: forwards_settled(box), 60, "the forwards to finish")
    wait_for(lambda: len(receptions(tmp_path / "archive")) == len(study), 30, "receptions")
    copies = receptions(tmp_path / "archive")
    assert {uid: len(paths) for uid, paths in copies.items()} == {
        i.sop_instance_uid: 1 for i in study
    }


def assert_forwarded_after_a_kill(
    make_box, archive, tmp_path: Path, when: Callable[[Path], bool], whole_box: bool = True
) -> None:
    port = free_port()
    archive(port)
    box = forwarding_box(make_box, port)
    study = make_study(300, rows=16, columns=16)
    tally = Tally()
    # One association, so one instance in flight, killed inside an index write while
    # ``when`` holds.
    senders = burst(box.port, study, 1, tally)
    wait_for(lambda: tally.count >= 20, 120, "the burst to get going")
    killed = kill_inside_index_write(box, also=lambda: when(box.data_dir), whole_box=whole_box)
    join_all(senders)
    if whole_box:
        box.start()
    # The modality sends again what it had no answer for; to the box some of it is
    # already stored, but the route must still carry every instance to the archive.
    unanswered = [i for i in study if i.sop_instance_uid not in tally.acknowledged]
    send_all(box.port, unanswered, again := Tally())
    assert again.count == len(unanswered)
    wait_for(lambda: forwards_settled(box), 120, "the forwards to finish")
    assert [j["state"] for j in jobs_of(box.data_dir, "forward") if j["state"] != "done"] == []
    missing = {i.sop_instance_uid for i in study} - set(received(tmp_path / "archive"))
    assert missing == set(), f"{len(missing)} stored instance(s) never forwarded"
    # no partial file, nor anything else the killed worker had under tmp/ (such as files
    # made ahead)
    assert tmp_leftovers(box.data_dir, box.pids()) == [], f"worker {killed} was killed"


def test_three_kills_and_an_archive_outage_in_one_forward_leave_no_image_behind(
    make_box, archive, tmp_path
):
    """The supervisor killed three times in one forward, then the archive gone for a few
    seconds: every acknowledged image still reaches it, with no ``jobs retry``. A try
    the box's death cut short is not counted, a failure that may pass is retried without
    limit, and what the archive acknowledged is recorded as it goes, so a restart sends
    only the rest (at most one unrecorded batch again per kill)."""
    port = free_port()
    out = tmp_path / "archive"
    # Each image costs the archive a sleep before its answer, so every kill lands midway;
    # +uf gives each reception a file of its own: an image received twice is two files.
    slow = ("+uf", "--exec-on-reception", "sleep 0.03", "--exec-sync")
    storescp = archive(port, *slow)
    # The forward waits until the whole study is in, so it is one job (on a machine too
    # slow for that, a few jobs of the remote's queue, run one after the other).
    box = make_box(
        f'{QUIET}[[remote]]\nname = "pacs"\nae_title = "ARCHIVE"\nhost = "127.0.0.1"\n'
        f"port = {port}\nretry_delay_s = 1\nretry_delay_max_s = 2\n"
        '[storage]\nforward_delay_s = 8\n[[route]]\nwhen = {}\nforward = ["pacs"]\n',
        workers=1,  # quicker restarts
    )
    study = make_study(300, rows=16, columns=16)
    join_all(burst(box.port, study, 2, tally := Tally()))
    assert tally.count == len(study)

    kills, seen = 3, 0
    for _ in range(kills):
        # Counted from the last kill: the forward has sent over a batch since its restart.
        kill_supervisor_mid_forward(box, out, seen + RECORD_EVERY + 10)
        seen = len(list(out.iterdir()))
        box.start(timeout=120)

    wait_for_files(out, seen + 10)
    storescp.terminate()  # the archive goes away mid-association, then refuses connections
    storescp.wait()
    outage = time.monotonic()
    wait_for(lambda: forward_failed_once(box), 60, "the forward to fail")
    (job,) = [j for j in jobs_of(box.data_dir, "forward") if j["last_error"]]
    assert job["state"] in ("queued", "running"), job  # to be tried again, not given up
    # `dicombox jobs` says why it waits and until when
    wait_for(lambda: waiting_shown(box), 60, "`dicombox jobs` to show the next try")
    time.sleep(max(0.0, outage + 3 - time.monotonic()))
    archive(port, *slow)

    wait_for(lambda: forwards_settled(box), 120, "the forward to finish")
    assert {j["state"] for j in jobs_of(box.data_dir, "forward")} == {"done"}
    copies = receptions(out)
    assert set(copies) == set(tally.acknowledged)
    for uid, paths in copies.items():
        assert after_meta(paths[0].read_bytes()) == tally.acknowledged[uid].data
    twice = sum(len(paths) - 1 for paths in copies.values())
    print(f"{twice} image(s) received twice after {kills} kills and an outage")
    # A kill may cut off one unrecorded batch: the images acknowledged since the last
    # record and the one whose answer the box never read. The outage, the one in flight.
    assert twice <= kills * RECORD_EVERY + 1


def wait_for_files(folder: Path, count: int) -> None:
    wait_for(lambda: len(list(folder.iterdir())) >= count, 120, f"{count} images received")


def kill_supervisor_mid_forward(box: RunningBox, archive: Path, received: int) -> None:
    """kill -9 of the supervisor, whose job runner sends the forward, once the archive
    holds ``received`` files and while a forward job runs (seen again with the box
    frozen). Any worker that outlives it is killed too; the caller restarts the box."""
    assert box.proc is not None
    pids = box.pids()

    def midway() -> bool:
        running = [j for j in jobs_of(box.data_dir, "forward") if j["state"] == "running"]
        return bool(running) and len(list(archive.iterdir())) >= received

    wait_for_files(archive, received)
    wait_for(midway, 60, "a forward to be running")
    with frozen(pids):
        assert midway(), "the forward ended before the kill"
        os.kill(box.proc.pid, signal.SIGKILL)
        box.proc.wait()
        for pid in pids[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def waiting_shown(box: RunningBox) -> bool:
    """A forward shown queued, with its next try and why the last one failed."""
    return any(
        " queued " in line and "next try" in line and "pacs" in line.split("next try")[1]
        for line in box.cli("jobs").stdout.splitlines()
    )


def forward_failed_once(box: RunningBox) -> bool:
    return any(j["last_error"] for j in jobs_of(box.data_dir, "forward"))


def receptions(folder: Path) -> dict[str, list[Path]]:
    """Each SOP Instance UID the archive received, with the file of each reception."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        found.setdefault(uid, []).append(path)
    return found


# --------------------------------------------------------------------------- full disk
@pytest.fixture
def small_volume(tmp_path) -> Iterator[Path]:
    """A 24 MB tmpfs mounted where the box keeps its data; unmounted after the box
    stopped (this fixture is set up before make_box, so torn down after it)."""
    mount = tmp_path / "var"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        unmount(mount)


def unmount(mount: Path) -> None:
    """Unmount, waiting a little for the box's last processes to let go of it."""
    for _ in range(50):
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_disk_full_mid_study_refuses_a700_and_keeps_what_it_acknowledged(small_volume, make_box):
    box = make_box(f"{QUIET}[storage]\nreserve_mb = 0\n", name=small_volume.name)
    ballast = small_volume / "ballast"  # space an operator frees later
    ballast.write_bytes(b"\xff" * (6 << 20))
    study = make_study(30, rows=512, columns=1024)  # 1 MB each, more than the volume holds
    sock, answer = associate(box.port)
    assert answer.accepted
    statuses = {inst.sop_instance_uid: store(sock, inst) for inst in study}
    rawclient.release(sock)  # the association lived through it all

    acknowledged = {i.sop_instance_uid: i for i in study if statuses[i.sop_instance_uid] == 0}
    refused = [i for i in study if statuses[i.sop_instance_uid] != 0]
    assert acknowledged and refused, statuses
    assert {statuses[i.sop_instance_uid] for i in refused} == {0xA700}
    assert "the data volume filled up while receiving" in box.output()  # ENOSPC, no reserve
    first_refused = study.index(refused[0])
    assert all(statuses[i.sop_instance_uid] == 0 for i in study[:first_refused])
    assert all(statuses[i.sop_instance_uid] != 0 for i in study[first_refused:])
    assert_intact(box, acknowledged)
    assert not set(index_paths(box.data_dir)) & {i.sop_instance_uid for i in refused}
    assert echo(box.port) == 0  # still up

    ballast.unlink()
    sock, _ = associate(box.port)
    assert [store(sock, inst) for inst in refused[:3]] == [0, 0, 0]
    rawclient.release(sock)
    assert_intact(box, acknowledged | {i.sop_instance_uid: i for i in refused[:3]})
    audit = box.data_dir / "audit" / "audit.jsonl"
    wait_for(lambda: refused[-1].sop_instance_uid in audit.read_text(), 30, "the held records")
    lines = audit.read_text().splitlines()
    rejected = {json.loads(line).get("sop_instance_uid") for line in lines}
    assert {i.sop_instance_uid for i in refused} <= rejected  # each refusal, while full


def test_the_audit_trail_holds_its_records_while_the_volume_is_full(small_volume, caplog):
    trail = AuditTrail(small_volume / "audit")
    ballast = small_volume / "ballast"
    with ballast.open("wb") as f:  # fill the volume to the last byte
        try:
            while True:
                f.write(b"\xff" * (1 << 20))
                f.flush()
        except OSError:
            pass
    with caplog.at_level(logging.WARNING, logger="dicombox.audit"):
        for n in range(50):  # would raise ENOSPC into the publisher
            trail(Event("instance.deleted", {"sop_instance_uid": f"1.2.{n}"}))
        assert "audit trail: cannot write" in caplog.text
        ballast.unlink()
        trail(Event("instance.deleted", {"sop_instance_uid": "1.2.50"}))
        assert "audit trail: writing again" in caplog.text
    trail.close()
    records = [json.loads(line) for line in trail.path.read_text().splitlines()]
    assert [r["sop_instance_uid"] for r in records] == [f"1.2.{n}" for n in range(51)]


# --------------------------------------------------------------- peers that misbehave
def start_data_set(sock: socket.socket, inst: Instance, sent: int, announce: int) -> None:
    """A C-STORE command, then a P-DATA-TF announcing ``announce`` bytes of the data set
    of which only the first ``sent`` follow."""
    command = rawclient.store_command(CTImageStorage, inst.sop_instance_uid)
    header = struct.pack(">BBIIBB", pdu.P_DATA_TF, 0, announce + 6, announce + 2, 1, 0)
    sock.sendall(pdu.p_data_pdus(1, command, True, 0)[0] + header + inst.data[:sent])


def big_instance() -> Instance:
    # Over two read chunks (core/net/pdu.py CHUNK), so part of it is on disk already
    # when the peer misbehaves.
    return make_study(1, rows=512, columns=512)[0]


def nothing_kept(box: RunningBox, inst: Instance) -> None:
    wait_for(lambda: not partial_files(box.data_dir), 30, "the partial file to go")
    assert inst.sop_instance_uid not in index_paths(box.data_dir)
    assert not list((box.data_dir / "studies").rglob(f"{inst.sop_instance_uid}*"))


def test_a_stalled_peer_is_timed_out_while_others_are_served(make_box):
    box = make_box(QUIET + SHORT_TIMEOUTS)
    stalled = big_instance()
    sock, answer = associate(box.port)
    assert answer.accepted
    start_data_set(sock, stalled, len(stalled.data) // 2, len(stalled.data))
    wait_for(lambda: partial_files(box.data_dir), 30, "the stalled data set to reach tmp/")
    # While it stalls, others are served: an echo, a whole store.
    assert echo(box.port) == 0
    send_all(box.port, others := make_study(2), tally := Tally())
    assert tally.count == 2
    pdu_type, _ = rawclient.read_pdu(sock)  # waits out the box's 2 s DIMSE timeout
    assert pdu_type == pdu.A_ABORT
    sock.close()
    nothing_kept(box, stalled)
    assert_intact(box, {i.sop_instance_uid: i for i in others})
    assert "timed out; aborting" in box.output()


def test_a_peer_aborting_mid_data_set_leaves_nothing(make_box):
    box = make_box(QUIET + SHORT_TIMEOUTS)
    inst = big_instance()
    sock, _ = associate(box.port)
    half = len(inst.data) // 2
    start_data_set(sock, inst, half, half)  # a whole PDU, the data set's last PDV not yet
    wait_for(lambda: partial_files(box.data_dir), 30, "the data set to reach tmp/")
    sock.sendall(pdu.abort(pdu.ABORT_SOURCE_USER))
    assert sock.recv(1) == b""  # the box closes its side
    sock.close()
    nothing_kept(box, inst)
    assert echo(box.port) == 0
    send_all(box.port, [inst], tally := Tally())  # the same instance, whole, is taken
    assert_intact(box, tally.acknowledged)
    assert tally.count == 1


def test_a_peer_vanishing_mid_pdu_leaves_nothing(make_box):
    box = make_box(QUIET + SHORT_TIMEOUTS)
    inst = big_instance()
    sock, _ = associate(box.port)
    start_data_set(sock, inst, len(inst.data) // 2, len(inst.data))
    wait_for(lambda: partial_files(box.data_dir), 30, "the data set to reach tmp/")
    # A reset, not a goodbye: the kernel drops the connection at once (SO_LINGER 0).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    nothing_kept(box, inst)
    assert echo(box.port) == 0
    send_all(box.port, [inst], tally := Tally())
    assert tally.count == 1
    assert_intact(box, tally.acknowledged)


# ----------------------------------------------------------------- many associations
def test_64_associations_at_once_all_stored_and_the_65th_rejected(make_box):
    # All from one address: the limit per host must not be what refuses the 65th.
    box = make_box(QUIET + "[network]\nmax_associations = 64\nmax_associations_per_host = 64\n")
    peers = 64
    studies = [make_study(3, rows=16, columns=16) for _ in range(peers)]
    held, go = threading.Barrier(peers + 1, timeout=180), threading.Barrier(peers + 1, timeout=180)
    tally = Tally()

    def peer(n: int) -> None:
        try:
            sock, answer = associate(box.port, calling=f"PEER{n:02d}", timeout=120)
        except OSError as exc:
            tally.broke(f"peer {n}: {type(exc).__name__}: {exc}")
            held.abort()  # fail now, not when the barrier times out
            return
        try:
            if not answer.accepted:
                tally.broke(f"peer {n} refused: PDU type {answer.pdu_type}")
            held.wait()  # every association open at once
            go.wait()
            for inst in studies[n] if answer.accepted else []:
                status = store(sock, inst)
                if status == 0:
                    tally.ack(inst)
                else:
                    tally.refuse(inst, status)
            if answer.accepted:
                rawclient.release(sock)
        except (OSError, threading.BrokenBarrierError) as exc:
            tally.broke(f"peer {n}: {type(exc).__name__}: {exc}")
        finally:
            sock.close()

    threads = [threading.Thread(target=peer, args=(n,), daemon=True) for n in range(peers)]
    for t in threads:
        t.start()
    held.wait()
    extra, answer = associate(box.port, calling="PEER65")
    extra.close()
    go.wait()
    join_all(threads, timeout=180)
    assert tally.broken == [] and tally.refused == {}
    # rejected-transient, by the presentation layer, local limit exceeded (PS3.8 §9.3.4)
    assert answer.rejection() == (2, 3, 2)
    everything = {i.sop_instance_uid: i for study in studies for i in study}
    assert tally.acknowledged.keys() == everything.keys()
    assert len(index_paths(box.data_dir)) == 3 * peers
    assert_intact(box, everything)


# ------------------------------------------------------------------------------ store
def test_threads_beginning_data_sets_at_once_never_share_a_temporary_file(tmp_path):
    # A worker's association threads open their temporary files at the same moments;
    # a name handed out twice failed the second open (O_EXCL), and its association
    # closed without an answer (seen once in a few thousand associations of the soak).
    instances = InstanceStore(tmp_path, reserve_bytes=0)
    clashes: list[OSError] = []

    def begin_many() -> None:
        for _ in range(3000):
            try:
                instances.begin(b"meta").discard()
            except FileExistsError as exc:
                clashes.append(exc)
            instances.prepare()  # the maker thread makes files while others take them

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=begin_many) for _ in range(8)]
        for t in threads:
            t.start()
        join_all(threads)
    finally:
        sys.setswitchinterval(interval)
    assert clashes == []
    instances.close()
    assert list((tmp_path / "tmp").iterdir()) == []
