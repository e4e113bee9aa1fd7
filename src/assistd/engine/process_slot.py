"""A number for each process of one server (``assistd serve --processes N``), held by a file lock in a
shared folder, so that what must differ between them (the code sandbox's uids) can."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import TextIO


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
