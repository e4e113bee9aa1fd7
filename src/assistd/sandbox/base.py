"""What code_interpreter needs of a sandbox, whoever provides it: this machine or a remote service."""

from __future__ import annotations

from collections.abc import Sequence
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


class Sandbox(Protocol):
    # Where the code finds its files, as told to the model.
    data_path: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def execute(self, key: str, code: str, inputs: Sequence[InputFile]) -> Execution:
        """Run ``code`` in the session ``key`` (one per thread), starting the session when needed.

        ``files`` of the result stay readable until the next call on the same session.
        """
        ...

    async def forget(self, key: str) -> None:
        """End the session ``key`` and delete its files."""
        ...
