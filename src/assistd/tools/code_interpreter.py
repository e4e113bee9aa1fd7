"""The code_interpreter tool: offered to the model as a function taking Python code, run by assistd in the
thread's sandboxed session; what the code printed, drew and wrote comes back as the call's outputs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..sandbox.base import Execution, InputFile, OutputFile, Sandbox, SandboxError
from ..storage import FileStorage
from ..store import code_sessions
from ..store import files as file_store
from ..store import runs as run_store
from ..store.code_sessions import CodeSession
from ..store.database import Database
from ..store.models import FileRow, MessageRow, RunRow
from .citations import Source

log = logging.getLogger(__name__)

NAME = "code_interpreter"
OUTPUT_PURPOSE = "assistants_output"
# The first output of a call whose thread's session was lost with the process that held it.
RESTARTED = (
    "The earlier session of this thread ended (its worker stopped); this is a new session with the "
    "thread's files restored. Variables and imports of the earlier session are gone."
)
# What of the logs the model reads back; the run step keeps them whole.
MODEL_LOG_CHARS = 8000
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def definition(data_path: str, files: Sequence[str]) -> dict[str, Any]:
    listed = ", ".join(f"{data_path}/{name}" for name in files) if files else "none yet"
    return {
        "type": "function",
        "function": {
            "name": NAME,
            "description": (
                "Run Python code in a stateful sandbox, like a Jupyter notebook: variables, imports and "
                "files persist between calls. numpy, pandas and matplotlib are installed; there is no "
                "internet access. The value of the last expression and everything printed are returned. "
                "Charts drawn with matplotlib are shown to the user. "
                f"The user's files are in {data_path} ({listed}). "
                f"Save files for the user in {data_path} and link them as sandbox:{data_path}/NAME."
            ),
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The Python code to run."}},
                "required": ["code"],
            },
        },
    }


def code_of(arguments: str) -> str:
    """The code of a call: ``{"code": ...}`` as asked, or the raw text some models send instead."""
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if isinstance(parsed, dict):
        value = parsed.get("code", parsed.get("input", ""))
        return value if isinstance(value, str) else ""
    return parsed if isinstance(parsed, str) else ""


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_CODE_START = re.compile(r'"code"\s*:\s*"')


class CodeStream:
    """Decodes the code of ``{"code": "..."}`` while its JSON streams in, for the step's input deltas."""

    def __init__(self) -> None:
        self._raw = ""
        self._start: int | None = None
        self._position = 0
        self._done = False

    def feed(self, piece: str) -> str:
        self._raw += piece
        if self._start is None:
            match = _CODE_START.search(self._raw)
            if match is None:
                return ""
            self._start = self._position = match.end()
        out: list[str] = []
        raw, i = self._raw, self._position
        while i < len(raw) and not self._done:
            char = raw[i]
            if char == '"':
                self._done = True
                i += 1
                break
            if char != "\\":
                out.append(char)
                i += 1
                continue
            if i + 1 >= len(raw):
                break  # the escape's second half has not come yet
            kind = raw[i + 1]
            if kind == "u":
                if i + 6 > len(raw):
                    break
                code = int(raw[i + 2 : i + 6], 16)
                if 0xD800 <= code < 0xDC00:
                    if i + 12 > len(raw):
                        break
                    low = int(raw[i + 8 : i + 12], 16)
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    i += 12
                else:
                    out.append(chr(code))
                    i += 6
                continue
            out.append(_ESCAPES.get(kind, kind))
            i += 2
        self._position = i
        return "".join(out)


@dataclass(frozen=True)
class CodeOutcome:
    """A code_interpreter call's result: the step's wire outputs, the text the model reads, and what it
    made for the user (image file ids; written files by the path the model knows them by)."""

    code: str
    outputs: list[dict[str, Any]]
    output: str
    images: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    sources: dict[int, Source] = field(default_factory=dict)


def _safe_name(name: str, fallback: str) -> str:
    cleaned = _UNSAFE.sub("_", Path(name).name).strip(" .")
    return cleaned or fallback


async def input_files(session: AsyncSession, run: RunRow) -> list[FileRow]:
    """The files the run's code may read: the assistant's and thread's tool resources, and the thread's
    message attachments for this tool."""
    ids = await run_store.tool_resource_ids(session, run, NAME, "file_ids")
    attached = await session.scalars(
        select(MessageRow.attachments).where(
            MessageRow.thread_id == run.thread_id, MessageRow.attachments.is_not(None)
        )
    )
    for attachments in attached:
        for attachment in attachments or []:
            if any(tool.get("type") == NAME for tool in attachment.get("tools") or []):
                ids.append(attachment["file_id"])
    if not ids:
        return []
    rows = (
        await session.scalars(select(FileRow).where(FileRow.id.in_(set(ids)), FileRow.tenant == run.tenant))
    ).all()
    return sorted(rows, key=lambda row: ids.index(row.id))


def file_names(rows: Sequence[FileRow]) -> dict[str, FileRow]:
    """The name each input file gets in the session's directory; a second file of a name gets its id."""
    named: dict[str, FileRow] = {}
    for row in rows:
        name = _safe_name(row.filename, row.id)
        if name in named and named[name].id != row.id:
            name = f"{row.id}-{name}"
        named[name] = row
    return named


class CodeInterpreter:
    """Runs a call's code in the thread's session on this process (``process_id``), and keeps the thread's
    ``code_sessions`` row: which process holds the session, and the files its code wrote. A thread whose
    row names another process had its session there: this process starts a new one with those files."""

    def __init__(
        self, db: Database, storage: FileStorage, sandbox: Sandbox, max_bytes: int, process_id: str
    ) -> None:
        self._db = db
        self._storage = storage
        self._sandbox = sandbox
        self._max_bytes = max_bytes
        self._process_id = process_id
        sandbox.on_session_end(self._ended)

    @property
    def data_path(self) -> str:
        return self._sandbox.data_path

    async def __call__(self, run: RunRow, arguments: str) -> CodeOutcome:
        code = code_of(arguments)
        # The session the code runs in: the thread's own, or the one a response named as its container.
        container = run_store.container_of(run.tools, run.thread_id)
        if not code.strip():
            note = "No code was given: call code_interpreter with the Python code to run."
            return CodeOutcome(code, [{"type": "logs", "logs": note}], note)
        async with self._db.read() as session:
            named = file_names(await input_files(session, run))
            earlier = await code_sessions.get(session, container)
            # The session was on another process: its files come back from the database.
            moved = earlier is not None and earlier.process_id != self._process_id
            kept = await _rows(session, run.tenant, earlier.files) if moved and earlier else {}
        async with contextlib.AsyncExitStack() as stack:
            inputs = await self._local(stack, named)
            restore = await self._local(stack, kept) if moved else None
            try:
                execution = await self._sandbox.execute(container, code, inputs, restore)
            except SandboxError as exc:
                execution = Execution(logs=str(exc), error=str(exc))
            images = [
                await self._keep(run.tenant, f"image-{n}.png", _bytes_of(image))
                for n, image in enumerate(execution.images, start=1)
            ]
            made = {
                item.name: await self._keep(run.tenant, Path(item.name).name, _file_of(item))
                for item in execution.files
            }
        await self._record(container, earlier, execution.session, made)
        written = {f"{self.data_path}/{name}": file_id for name, file_id in made.items()}
        # Said only when the session was lost, not when it idled out: then the thread's runs were free to
        # go anywhere, as on one process, where a session that idled out starts again without a word.
        lost = moved and earlier is not None and earlier.live and bool(execution.session)
        return self._outcome(code, execution, images, written, RESTARTED if lost else None)

    async def _local(self, stack: contextlib.AsyncExitStack, named: dict[str, FileRow]) -> list[InputFile]:
        """The files ``named`` as paths on this machine, for as long as ``stack`` lasts."""
        found = []
        for name, row in named.items():
            with contextlib.suppress(FileNotFoundError):
                path = await stack.enter_async_context(self._storage.local_path(row.storage_key))
                found.append(InputFile(name=name, path=path))
        return found

    async def _record(
        self, thread_id: str, earlier: CodeSession | None, session_id: str, made: dict[str, str]
    ) -> None:
        """Note the session that ran the code as the thread's, held here, with the files it wrote; a call
        in the same session that wrote nothing changes nothing, and costs no write."""
        if not session_id:
            return  # no session ran it
        same = (
            earlier is not None
            and earlier.process_id == self._process_id
            and earlier.session_id == session_id
            and earlier.live
        )
        if same and not made:
            return
        files = {**(earlier.files if earlier else {}), **made}
        async with self._db.write() as session:
            await code_sessions.record(session, thread_id, self._process_id, session_id, files)

    async def _ended(self, thread_id: str, session_id: str) -> None:
        try:
            async with self._db.write() as session:
                await code_sessions.ended(session, thread_id, session_id)
        except Exception:
            # Left live, the thread's runs keep coming here while this process lives: still right.
            log.warning("could not record the end of thread %s's code session", thread_id, exc_info=True)

    async def _keep(self, tenant: str, filename: str, chunks: AsyncIterator[bytes]) -> str:
        blob = await self._storage.save(chunks, max_bytes=self._max_bytes)
        async with self._db.write() as session:
            wire = await file_store.insert(session, tenant, OUTPUT_PURPOSE, filename, blob)
        return wire.id

    def _outcome(
        self, code: str, execution: Execution, images: list[str], written: dict[str, str], note: str | None
    ) -> CodeOutcome:
        # The note is a logs output of its own, before the code's: the step shows it as said, apart.
        outputs: list[dict[str, Any]] = [{"type": "logs", "logs": note}] if note else []
        if execution.logs:
            outputs.append({"type": "logs", "logs": execution.logs})
        outputs += [{"type": "image", "image": {"file_id": file_id}} for file_id in images]
        told = execution.logs[:MODEL_LOG_CHARS] if execution.logs else "(no output)"
        if note:
            told = f"{note}\n\n{told}"
        if len(execution.logs) > MODEL_LOG_CHARS:
            told += "\n[... output cut ...]"
        if execution.error:
            told += f"\n\nThe code failed: {execution.error}"
        if images:
            told += f"\n\n{len(images)} chart(s) were shown to the user."
        if written:
            told += "\n\nFiles written (link them for the user): " + ", ".join(
                f"sandbox:{path}" for path in written
            )
        return CodeOutcome(code, outputs, told, images, written)


async def _rows(session: AsyncSession, tenant: str, files: dict[str, str]) -> dict[str, FileRow]:
    """The file rows of ``files`` (path → file id), by path; files deleted since are left out."""
    if not files:
        return {}
    found = await session.scalars(
        select(FileRow).where(FileRow.id.in_(set(files.values())), FileRow.tenant == tenant)
    )
    rows = {row.id: row for row in found}
    return {name: rows[file_id] for name, file_id in files.items() if file_id in rows}


async def _bytes_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _file_of(item: OutputFile) -> AsyncIterator[bytes]:
    # Never through a link: the code could have made its file a link to one of the server's.
    descriptor = await asyncio.to_thread(os.open, item.path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 1024 * 1024):
            yield chunk
