"""Who listens on a TCP port, for the one-line error of a box that cannot take its port.

Read from /proc (Linux): the listening sockets' inodes in /proc/net/tcp and tcp6, then the
processes holding one of them open. Another user's processes can be out of sight (not
root, or /proc mounted with hidepid): then nobody is named.
"""

from __future__ import annotations

from pathlib import Path

TCP_LISTEN = "0A"


def port_holder(port: int) -> str | None:
    """Who holds it: "another dicombox (pid N)", "pid N (program)", or None if unseen."""
    inodes = _listening_inodes(port)
    pids = _pids_holding(inodes) if inodes else set()
    if not pids:
        return None
    # A box's supervisor hands its socket to its workers: name the process that has it
    # from no other holder.
    first = min([p for p in pids if _parent(p) not in pids] or pids)
    args = _command_line(first)
    # The interpreter, then the ``dicombox`` script or ``-m dicombox.core.cli`` (.worker)
    if any(Path(a).name == "dicombox" or a.startswith("dicombox.core.") for a in args[1:3]):
        return f"another dicombox (pid {first})"
    return f"pid {first} ({Path(args[0]).name if args else 'unknown'})"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address "hex-ip:hex-port", state, ..., inode at index 9
            listens = len(fields) > 9 and fields[3] == TCP_LISTEN
            if listens and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pids_holding(inodes: set[str]) -> set[int]:
    links = {f"socket:[{inode}]" for inode in inodes}
    pids: set[int] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            for fd in (proc / "fd").iterdir():
                if fd.readlink().as_posix() in links:
                    pids.add(int(proc.name))
                    break
        except OSError:  # gone, or not ours to look at
            continue
    return pids


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
