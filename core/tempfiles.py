"""Temporary files for arriving data sets, made ahead of need.

Creating a file allocates an inode; on a large ext4 without a journal, which will not
reuse an inode freed in the last minutes, that cost from 20 µs to 0.9 ms of kernel time
here, up to a third of a 512 kB image's whole turn. A sender waits for each
answer, so that time would be on every image's path. Instead a thread keeps a few empty
files ready: the C-STORE SCP asks for more once an answer is sent, and the file is made
while the sender reads its next image.

A file's name starts with the process's pid, so the supervisor can sweep what a dead
worker left (``InstanceStore.sweep_temporary``); what a crash leaves are empty files.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import deque
from pathlib import Path

log = logging.getLogger("dicombox.store")

# One per association a worker usually serves at once.
SPARES = 2


class TemporaryFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Association threads take files at once: next() on a count is atomic where
        # "+= 1" is not, and two threads given one name failed the second's O_EXCL open.
        self._counter = itertools.count(1)
        # (path, descriptor) of files made ahead; a deque's append and popleft are
        # atomic, so the threads share it without a lock.
        self._spares: deque[tuple[Path, int]] = deque()
        self._wanted = threading.Event()
        self._closed = False
        self._maker: threading.Thread | None = None
        self._lock = threading.Lock()  # starting the maker, and stopping it

    def take(self) -> tuple[Path, int]:
        """A new empty file, open for writing: one made ahead if there is one."""
        try:
            return self._spares.popleft()
        except IndexError:
            return self._make()

    def prepare(self) -> None:
        """Have files made ahead, up to SPARES, by the maker thread; returns at once and
        never fails: without files made ahead, ``take`` makes its own."""
        with self._lock:
            if self._closed:
                return
            if self._maker is None:
                maker = threading.Thread(
                    target=self._keep_ready, name="temporary-files", daemon=True
                )
                try:
                    maker.start()
                except RuntimeError as exc:  # no thread to be had: files are made on demand
                    log.warning("temporary files are not made ahead: %s", exc)
                    self._closed = True
                    return
                self._maker = maker
        self._wanted.set()

    def close(self) -> None:
        """Stop the maker and remove the files it made that nobody took."""
        with self._lock:
            self._closed = True
            maker = self._maker
        self._wanted.set()
        if maker is not None:
            maker.join()
        while True:
            try:  # an association still finishing may take one meanwhile
                path, fd = self._spares.popleft()
            except IndexError:
                return
            os.close(fd)
            path.unlink(missing_ok=True)

    def _make(self) -> tuple[Path, int]:
        path = self.folder / f"{os.getpid()}-{id(self)}-{next(self._counter)}.part"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)

    def _keep_ready(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed:
                return
            try:
                while len(self._spares) < SPARES and not self._closed:
                    self._spares.append(self._make())
            except OSError as exc:  # a full or read-only volume: take() will say so
                log.debug("no temporary file made ahead: %s", exc)
