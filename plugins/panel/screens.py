"""The panel's own status screens (who the box is, today's images, jobs, the last
error, the disk) and menu actions (acknowledge the error, show the address).

Each screen renders to at most ``rows`` lines, the most important first, so that a
two-row display shows what matters.
"""

from __future__ import annotations

import json
import shutil
import socket
import textwrap
import time

from sqlalchemy import func, select

from dicombox.core.box import Box
from dicombox.core.hookspecs import PanelAction, PanelScreen
from dicombox.core.index import schema
from dicombox.core.jobs import QUEUED
from dicombox.plugins.panel.activity import Activity, short_progress

ANY_ADDRESS = ("", "*", "0.0.0.0", "::")


def wrap(text: str, columns: int) -> list[str]:
    return textwrap.wrap(text, columns, break_long_words=True, break_on_hyphens=False) or [""]


def local_address(bind: str = "*") -> str:
    """The address people reach the box at: the one it listens on, else the one of
    the interface holding the default route."""
    if bind not in ANY_ADDRESS:
        return bind
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            # Connecting a UDP socket sends nothing: the kernel only picks the route
            # (192.0.2.1 is a documentation address, never a real peer).
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "no network"


def listening_port(box: Box) -> str:
    """The DICOM port: configured, or (port 0) the one chosen at start."""
    if box.config.box.port:
        return str(box.config.box.port)
    try:
        return str(json.loads((box.run_dir / "ready.json").read_text())["port"])
    except (OSError, ValueError, KeyError):
        return "?"  # not listening yet


def identity_lines(box: Box, activity: Activity, columns: int, rows: int) -> list[str]:
    ae = box.config.box.ae_title
    address, port = local_address(box.config.box.bind), listening_port(box)
    state = activity.state_line()
    if rows >= 4:
        return [ae, address, f"port {port}", state]
    if rows == 3:
        return [ae, f"{address}:{port}", state]
    return [f"{ae} {state}" if len(ae) + len(state) < columns else ae, f"{address}:{port}"]


def today_lines(activity: Activity, columns: int, rows: int) -> list[str]:
    lines = ["Received today", f"{activity.today()} images"]
    receiving = activity.receiving()
    if receiving:
        lines.append(f"receiving {receiving} now")
    elif activity.last_received:
        lines.append(time.strftime("last at %H:%M", time.localtime(activity.last_received)))
    return lines


def queued_jobs(box: Box) -> int:
    """Jobs waiting their turn (or their retry), counted in the index."""
    t = schema.jobs
    with box.index.engine.connect() as conn:
        found = conn.execute(select(func.count()).where(t.c.state == QUEUED)).scalar()
    return int(found or 0)


def jobs_lines(box: Box, activity: Activity, columns: int, rows: int) -> list[str]:
    running = activity.jobs()
    queued = queued_jobs(box)
    if not running and not queued:
        return ["Jobs", "none waiting"]
    lines = [f"Jobs: {len(running)} running"]
    lines += [short_progress(job.kind, job.progress) for job in running]
    if queued:
        lines = [*lines[: rows - 1], f"{queued} queued"]
    return lines


def error_lines(activity: Activity, columns: int, rows: int) -> list[str]:
    failure = activity.pending_failure()
    if failure is None:
        return []
    when = time.strftime("%H:%M", time.localtime(failure.at))
    return [f"ERROR {when}", *wrap(str(failure), columns)]


def disk_lines(box: Box, columns: int, rows: int) -> list[str]:
    try:
        usage = shutil.disk_usage(box.data_dir)
    except OSError as exc:
        return ["Disk", f"unreadable: {exc.strerror}"]
    used = round(100 * (usage.total - usage.free) / usage.total) if usage.total else 100
    totals = box.index.totals()
    return [
        f"Disk {used}% used",
        f"free {usage.free / 1e9:.1f} GB",
        f"{totals['studies']} studies",
        f"{totals['instances']} images",
    ]


def core_screens(box: Box, activity: Activity) -> list[PanelScreen]:
    return [
        PanelScreen("identity", lambda c, r: identity_lines(box, activity, c, r), order=0),
        PanelScreen("error", lambda c, r: error_lines(activity, c, r), order=5),
        PanelScreen("today", lambda c, r: today_lines(activity, c, r), order=10),
        PanelScreen("jobs", lambda c, r: jobs_lines(box, activity, c, r), order=20),
        PanelScreen("disk", lambda c, r: disk_lines(box, c, r), order=30),
    ]


def show_address(box: Box) -> str:
    address = local_address(box.config.box.bind)
    return f"{box.config.box.ae_title} {address} port {listening_port(box)}"


def core_actions(box: Box, activity: Activity) -> list[PanelAction]:
    return [
        PanelAction("Acknowledge error", activity.acknowledge, order=40),
        PanelAction("Show IP address", lambda: show_address(box), order=50),
    ]
