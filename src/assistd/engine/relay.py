"""Run status changes told to the other processes of one server (``assistd serve --processes N``).

A run executes in one process, but the requests about it (a long poll, a cancel, the ``/ask`` wait) reach
whichever process the client's connection landed on. Each process binds a Unix datagram socket in one shared
folder; the process that changes a run's status tells the others, which then read the run and hand the
change to their own listeners. Datagrams are small and local: no broker, nothing to run beside assistd.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

# A process started since the last look at the folder is found this long after, at most.
_PEERS_TTL_SECONDS = 0.5
_MAX_DATAGRAM = 512
_MAX_SOCKET_PATH = 107


class Relay:
    """This process's socket in ``directory``; ``on_status(run_id, event)`` is called for each change
    another process tells."""

    def __init__(self, directory: Path, on_status: Callable[[str, str], None]) -> None:
        self._directory = directory
        self._on_status = on_status
        self._path = directory / f"{os.getpid()}.sock"
        self._socket: socket.socket | None = None
        self._peers: list[str] = []
        self._peers_at = 0.0

    def start(self) -> None:
        if len(str(self._path).encode()) > _MAX_SOCKET_PATH:
            raise ValueError(f"the process relay's socket path is too long for Unix sockets: {self._path}")
        self._directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # left by a process of the same pid that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self._path))
        sock.setblocking(False)
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)

    def close(self) -> None:
        if self._socket is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def tell(self, run_id: str, event: str) -> None:
        """Tell every other process that ``run_id`` published ``event`` (a ``thread.run.*`` status)."""
        if self._socket is None:
            return
        payload = f"{run_id} {event}".encode()
        for peer in self._peers_now():
            try:
                self._socket.sendto(payload, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                # Its process is gone: forget its socket.
                with contextlib.suppress(OSError):
                    os.unlink(peer)
                self._peers_at = 0.0
            except BlockingIOError:
                log.warning("process relay: %s is not reading; dropped %s of %s", peer, event, run_id)
            except OSError:
                log.warning("process relay: could not tell %s", peer, exc_info=True)

    def _peers_now(self) -> list[str]:
        if time.monotonic() - self._peers_at > _PEERS_TTL_SECONDS:
            mine = str(self._path)
            self._peers = [str(p) for p in self._directory.glob("*.sock") if str(p) != mine]
            self._peers_at = time.monotonic()
        return self._peers

    def _receive(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            run_id, _, event = data.decode(errors="replace").partition(" ")
            if run_id and event.startswith("thread.run."):
                try:
                    self._on_status(run_id, event)
                except Exception:
                    log.exception("process relay: handling %s of %s failed", event, run_id)


def claim_process_slot(directory: Path, processes: int) -> tuple[int, TextIO]:
    """A number for this process among the server's ``processes`` (held while the returned file stays
    open), so that what must differ between them, like the code sandbox's uids, can."""
    directory.mkdir(parents=True, exist_ok=True)
    # Twice as many numbers as processes: a process restarting may start before the one it replaces ends.
    for slot in range(2 * processes):
        handle = (directory / f"slot-{slot}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return slot, handle
    raise RuntimeError(f"more than {2 * processes} assistd processes share {directory}")
