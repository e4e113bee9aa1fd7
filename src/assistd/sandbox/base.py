"""What code_interpreter needs of a sandbox, whoever provides it: this machine or a remote service."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class SandboxError(Exception):
    """The sandbox could not run the code at all (could not start, no free session)."""


@dataclass(frozen=True)
class InputFile:
    """A file to place in the session's directory under ``name``, read from ``path``."""

    name: str
    path: Path


@dataclass(frozen=True)
class OutputFile:
    """A file the code wrote: ``name`` relative to the session's directory, its bytes at ``path``."""

    name: str
    path: Path
    size: int


@dataclass
class Execution:
    """What one call produced. ``error`` is set when the code raised or broke a limit."""

    logs: str
    images: list[bytes] = field(default_factory=list)
    files: list[OutputFile] = field(default_factory=list)
    error: str | None = None
    # The id of the session that ran the code (a new one each time a session starts); empty when none could.
    session: str = ""


# Told that the session ``session`` (its id) of the key ``key`` ended: ``ended(key, session)``.
SessionEnded = Callable[[str, str], Coroutine[None, None, None]]


class Sandbox(Protocol):
    # Where the code finds its files, as told to the model.
    data_path: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def execute(
        self, key: str, code: str, inputs: Sequence[InputFile], restore: Sequence[InputFile] | None = None
    ) -> Execution:
        """Run ``code`` in the session ``key`` (one per thread), starting the session when needed.

        ``restore``: the key's state lives elsewhere (its session was on another process): a session of
        ``key`` here is stale and ends first, and these files (names may hold folders) are put back in the
        new session's directory, replacing what differs, before ``inputs`` are placed.

        ``files`` of the result stay readable until the next call on the same session.
        """
        ...

    def on_session_end(self, ended: SessionEnded) -> None:
        """Have ``ended`` told of each session that ends before ``close`` (idle, evicted, broken, gone)."""
        ...

    async def forget(self, key: str) -> None:
        """End the session ``key`` and delete its files."""
        ...
