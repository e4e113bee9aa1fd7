"""Telling, at once, that a process of this host died: each process that executes holds a file lock named
for its id while it lives, and the kernel drops the lock when the process ends, SIGKILL included. A lock
that can be taken is a process that is gone, whose jobs need not wait for their leases to lapse.

A live process always holds its lock, so a lock is never judged free while its process runs, whatever the
pid namespaces (containers) or pid reuse. Only locks of this host's processes are looked at; a process
whose lock file is not in this folder (another host, another data folder) is left to its lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

_SUFFIX = ".lock"


def _host_prefix() -> str:
    # As the process ids have it (``worker.new_process_id``): the host cut to 40 characters.
    return f"{socket.gethostname()[:40]}:"


class ProcessLock:
    """This process's lock, held from ``acquire`` until the process ends (or ``release``)."""

    def __init__(self, directory: Path, process_id: str) -> None:
        self.directory = directory
        self.process_id = process_id
        self._handle: TextIO | None = None

    def acquire(self) -> bool:
        """Take the lock; False (and a warning) where the folder cannot be written: this process is then
        left to its lease if it dies."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Locked under a name the others ignore, then renamed: a look between the file's creation and
            # its lock must not find it free and take this live process for a dead one.
            staging = self.directory / f"{self.process_id}{_SUFFIX}.new"
            handle = staging.open("w")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            staging.rename(self.directory / f"{self.process_id}{_SUFFIX}")
        except OSError:
            log.warning("could not take this process's lock in %s", self.directory, exc_info=True)
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        """At a clean stop: the file goes, then the lock."""
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            (self.directory / f"{self.process_id}{_SUFFIX}").unlink()
        self._handle.close()
        self._handle = None


@contextlib.contextmanager
def dead_processes(directory: Path, own_id: str) -> Iterator[list[str]]:
    """The ids of this host's processes that died with their lock files in ``directory``: their locks are
    held here until the block ends (so that a second look meanwhile does not report them again), and their
    files removed then, once the caller has released what they held. A block that raises keeps the files:
    the next look finds them again."""
    held: list[tuple[str, TextIO]] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        names = []
    prefix = _host_prefix()
    try:
        for name in names:
            if not name.endswith(_SUFFIX) or not name.startswith(prefix):
                continue
            process_id = name[: -len(_SUFFIX)]
            if process_id == own_id:
                continue
            try:
                handle = (directory / name).open("r")
            except OSError:
                continue  # removed by another process's look meanwhile
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # held: that process lives
                continue
            held.append((process_id, handle))
        yield [process_id for process_id, _ in held]
        for process_id, _ in held:
            with contextlib.suppress(OSError):
                (directory / f"{process_id}{_SUFFIX}").unlink()
    finally:
        for _, lock in held:
            lock.close()
