"""Sandboxed Python sessions on this machine, one worker process per thread.

Each session is a worker (``kernel.py``) started through ``launcher.py``: as root, in its own mount and
network namespaces and as a uid of its own (``_uids``), so sessions can neither reach
the network nor each other's files, the server's files or the server's processes. Limits on memory, CPU,
processes, open files and file size are rlimits; the session directory's size and the wall time of each
call are watched from here. A call that breaks a limit is stopped (SIGINT first, which keeps the
session's variables; SIGKILL to every process of the session's uid when that is not enough).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import filecmp
import json
import logging
import os
import re
import secrets
import shutil
import signal
import site
import stat as stat_mode
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from . import kernel
from .base import Execution, InputFile, OutputFile, SandboxError, SessionEnded

log = logging.getLogger(__name__)

MB = 1024 * 1024
_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
START_TIMEOUT_SECONDS = 30.0
# After SIGINT, how long the code has to give control back before its session is killed.
INTERRUPT_GRACE_SECONDS = 2.0
DISK_CHECK_SECONDS = 0.25
MAX_OUTPUT_FILES = 20
# The worker's answer carries the figures as base64 on one line.
REPLY_LIMIT = 256 * MB


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float
    idle_seconds: float
    max_sessions: int
    memory_bytes: int
    disk_bytes: int
    tmp_bytes: int
    cpu_seconds: int
    processes: int
    open_files: int
    output_bytes: int
    uid_base: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            timeout_seconds=settings.code_timeout_seconds,
            idle_seconds=settings.code_session_idle_seconds,
            max_sessions=settings.code_max_sessions,
            memory_bytes=settings.code_memory_mb * MB,
            disk_bytes=settings.code_disk_mb * MB,
            tmp_bytes=settings.code_tmp_mb * MB,
            cpu_seconds=settings.code_cpu_seconds,
            processes=settings.code_max_processes,
            open_files=settings.code_max_open_files,
            output_bytes=settings.max_upload_bytes,
            uid_base=settings.code_uid_base,
        )


@dataclass
class _Session:
    key: str
    workdir: Path
    slot: int
    uid: int
    process: asyncio.subprocess.Process
    pid: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    id: str = field(default_factory=lambda: secrets.token_hex(8))


def _first_uid(limits: Limits, root: Path) -> int:
    """The first of the uids this server's sessions run as. Two servers on one host (tests run several)
    must never share a uid, or one would kill the other's sessions; a restarted server must get its own
    range back to end what its last run left. So the range follows from the sandbox directory."""
    ranges = 4096
    return limits.uid_base + (zlib.crc32(str(root).encode()) % ranges) * limits.max_sessions


def _memory_cgroups() -> Path | None:
    """A folder for sessions' memory cgroups under the server's own (cgroup v1), if the host lets us."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                root = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "assistd-sandbox"
                root.mkdir(exist_ok=True)
                return root
    except (OSError, ValueError):
        pass
    log.warning("no memory cgroup (v1) for code sessions: each process is capped, not each session")
    return None


def _server_places(settings: Settings) -> list[str]:
    """Directories of the server's own that a session must not see."""
    places = [settings.data_dir.resolve(), Path.cwd()]
    url = settings.resolved_database_url
    if url.startswith("sqlite") and "///" in url:
        places.append(Path(url.split("///", 1)[1]).resolve().parent)
    return sorted({str(place) for place in places if place != Path("/")})


def _site_dirs() -> list[str]:
    return [directory for directory in site.getsitepackages() if os.path.isdir(directory)]


def _tree(root: Path) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """Everything under ``root`` with its own stat; symbolic links are listed, never followed."""
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            yield entry, stat


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Regular files under ``root``, by relative path: size and mtime."""
    found: dict[str, tuple[int, int]] = {}
    for entry, stat in _tree(root):
        if entry.is_file(follow_symlinks=False):
            found[str(Path(entry.path).relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
            if len(found) >= 10_000:
                break
    return found


def _usage(root: Path) -> int:
    return sum(stat.st_blocks * 512 for _, stat in _tree(root))


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid, follow_symlinks=False)
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                os.chown(os.path.join(directory, name), uid, uid, follow_symlinks=False)


def _place(source: Path, target: Path, uid: int | None, *, exact: bool = False) -> None:
    """Copy an input file in, never through a link the code may have planted at its name. A file already
    there is kept when its size is the source's (``exact``: when its bytes are)."""
    try:
        existing = target.lstat()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        kept = target.is_file() and not target.is_symlink() and existing.st_size == source.stat().st_size
        if kept and (not exact or filecmp.cmp(source, target, shallow=False)):
            return
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as out, source.open("rb") as inp:
        shutil.copyfileobj(inp, out, 1024 * 1024)
        if uid is not None:
            os.fchown(out.fileno(), uid, uid)


def _restore(source: Path, workdir: Path, name: str, uid: int | None) -> None:
    """Put a file the thread's code wrote in an earlier session back at ``name`` (a path relative to the
    session's directory, as ``_outputs`` gave it). Folders on the way are made; one that is a link or a file
    (the code may have planted either in an old directory of this thread) leaves the file out: the server
    runs as root and must never write through it."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(part in (".", "..") for part in parts):
        return
    directory = workdir
    for part in parts[:-1]:
        directory = directory / part
        try:
            if not stat_mode.S_ISDIR(directory.lstat().st_mode):
                return
        except FileNotFoundError:
            directory.mkdir(mode=0o700)
            if uid is not None:
                os.chown(directory, uid, uid)
    _place(source, directory / parts[-1], uid, exact=True)


def _alive(pid: str) -> bool:
    """Not a zombie: a killed child its parent has not reaped yet is already gone for our purposes."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _live_pids(belongs: Callable[[Path], bool]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if belongs(entry) and _alive(entry.name):
                pids.append(int(entry.name))
    return pids


def _processes_of(uid: int) -> list[int]:
    return _live_pids(lambda entry: entry.stat().st_uid == uid)


def _group_members(pgid: int) -> list[int]:
    return _live_pids(lambda entry: os.getpgid(int(entry.name)) == pgid)


def _kill_all(find: Callable[[], list[int]]) -> None:
    """SIGKILL what ``find`` finds until it finds nothing: a fork bomb forks while it is being killed."""
    for _ in range(100):
        pids = find()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


class LocalSandbox:
    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.limits = Limits.from_settings(settings)
        self.root = (root or settings.data_dir / "sandbox").resolve()
        self._hidden = _server_places(settings)
        self._first_uid = _first_uid(self.limits, self.root)
        # Root can give each session namespaces and a uid of its own; anyone else gets the fallback.
        self.isolated = os.geteuid() == 0
        self.data_path = "/mnt/data" if self.isolated else str(self.root / "sessions")
        self._sessions: dict[str, _Session] = {}
        self._free_slots = list(range(self.limits.max_sessions))
        self._starting = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._cgroups: Path | None = None
        self._ended: SessionEnded | None = None
        self._telling: set[asyncio.Task[None]] = set()

    def on_session_end(self, ended: SessionEnded) -> None:
        self._ended = ended

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare_root)
        self._reaper = asyncio.create_task(self._reap_forever())

    def _prepare_root(self) -> None:
        (self.root / "sessions").mkdir(parents=True, exist_ok=True)
        (self.root / "capture").mkdir(parents=True, exist_ok=True)
        for directory in (self.root, self.root / "sessions", self.root / "capture"):
            os.chmod(directory, 0o700)
        if self.isolated:
            self._cgroups = _memory_cgroups()
            # Sessions of an earlier server may still run: their slots are about to be handed out again.
            for slot in range(self.limits.max_sessions):
                self._kill_uid(self._first_uid + slot)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        # Not told as ended: the process is stopping, and the others learn that from its processes row (a
        # session ended here would read as one that idled out, not as one whose worker went away).
        for session in list(self._sessions.values()):
            await self._stop(session, tell=False)
        for task in list(self._telling):
            task.cancel()

    async def forget(self, key: str) -> None:
        session = self._sessions.get(key)
        if session is not None:
            async with session.lock:
                await self._stop(session)
        await asyncio.to_thread(shutil.rmtree, self._workdir(key), True)

    def _workdir(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise SandboxError(f"not a session key: {key!r}")
        return self.root / "sessions" / key

    async def execute(
        self, key: str, code: str, inputs: Sequence[InputFile], restore: Sequence[InputFile] | None = None
    ) -> Execution:
        if restore is not None:
            # The key's state moved elsewhere and back: what a session here still holds is stale.
            stale = self._sessions.get(key)
            if stale is not None:
                async with stale.lock:
                    await self._stop(stale)
        while True:
            session = await self._session(key)
            async with session.lock:
                if self._sessions.get(key) is not session:
                    continue  # ended (evicted, reaped) while this call waited for it: start another
                session.last_used = time.monotonic()
                try:
                    if restore:
                        owner = session.uid if self.isolated else None
                        for item in restore:
                            await asyncio.to_thread(_restore, item.path, session.workdir, item.name, owner)
                    execution = await self._execute(session, code, inputs)
                    execution.session = session.id
                    return execution
                finally:
                    session.last_used = time.monotonic()

    async def _session(self, key: str) -> _Session:
        async with self._starting:
            session = self._sessions.get(key)
            if session is not None and session.process.returncode is None:
                return session
            if session is not None:
                await self._stop(session)
            if not self._free_slots:
                await self._evict_one()
            slot = self._free_slots.pop(0)
            try:
                session = await self._spawn(key, slot)
            except BaseException:
                self._free_slots.append(slot)
                raise
            self._sessions[key] = session
            return session

    async def _evict_one(self) -> None:
        idle = [s for s in self._sessions.values() if not s.lock.locked()]
        if not idle:
            raise SandboxError("Every code session is busy; try again shortly.")
        await self._stop(min(idle, key=lambda s: s.last_used))

    async def _spawn(self, key: str, slot: int) -> _Session:
        workdir = self._workdir(key)
        uid = self._first_uid + slot
        await asyncio.to_thread(self._prepare_workdir, workdir, uid)
        cgroup = await asyncio.to_thread(self._memory_group, uid)
        config: dict[str, Any] = {
            "cgroup": str(cgroup / "cgroup.procs") if cgroup is not None else None,
            "isolate": self.isolated,
            "uid": uid,
            "workdir": str(workdir),
            "capture": str(self.root / "capture" / f"{key}.out"),
            "python_prefix": sys.base_prefix,
            "python_name": f"python{sys.version_info.major}.{sys.version_info.minor}",
            "site_dirs": await asyncio.to_thread(_site_dirs),
            "kernel": kernel.__file__,
            "hide": self._hidden,
            "limits": {
                "memory_bytes": self.limits.memory_bytes,
                "cpu_seconds": self.limits.cpu_seconds,
                "processes": self.limits.processes,
                "open_files": self.limits.open_files,
                "file_bytes": self.limits.disk_bytes,
                "tmp_bytes": self.limits.tmp_bytes,
            },
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-m",
            "assistd.sandbox.launcher",
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            # Nothing of the server's environment (its keys above all) reaches the sandbox.
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            limit=REPLY_LIMIT,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
            ready = json.loads(line) if line else None
        except (TimeoutError, json.JSONDecodeError):
            ready = None
        if not ready or not ready.get("ready"):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            problem = (await process.stderr.read(4000)).decode(errors="replace").strip()
            await process.wait()
            raise SandboxError(f"The code session could not start: {problem or 'no answer'}")
        # From here on stderr is the worker's capture file; nothing more comes on the pipe.
        return _Session(key=key, workdir=workdir, slot=slot, uid=uid, process=process, pid=int(ready["pid"]))

    def _memory_group(self, uid: int) -> Path | None:
        """The session's memory cgroup, capping all its processes together (rlimits cap each alone)."""
        if self._cgroups is None:
            return None
        group = self._cgroups / str(uid)
        try:
            group.mkdir(exist_ok=True)
            (group / "memory.limit_in_bytes").write_text(str(self.limits.memory_bytes))
        except OSError:
            log.warning("could not set up the memory cgroup %s", group, exc_info=True)
            return None
        with contextlib.suppress(OSError):
            # Where swap is accounted, the session may not swap its way past the limit either.
            (group / "memory.memsw.limit_in_bytes").write_text(str(self.limits.memory_bytes))
        return group

    def _prepare_workdir(self, workdir: Path, uid: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        if self.isolated:
            _chown_tree(workdir, uid)
        os.chmod(workdir, 0o700)

    async def _execute(self, session: _Session, code: str, inputs: Sequence[InputFile]) -> Execution:
        owner = session.uid if self.isolated else None
        for item in inputs:
            await asyncio.to_thread(_place, item.path, session.workdir / item.name, owner)
        before = await asyncio.to_thread(_snapshot, session.workdir)
        process = session.process
        assert process.stdin is not None and process.stdout is not None
        reply_task = asyncio.ensure_future(process.stdout.readline())
        watch = asyncio.ensure_future(self._watch_disk(session))
        problem: str | None = None
        line = b""
        try:
            process.stdin.write(json.dumps({"code": code}).encode() + b"\n")
            await process.stdin.drain()
            done, _ = await asyncio.wait(
                {reply_task, watch}, timeout=self.limits.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if reply_task in done:
                line = reply_task.result()
            elif watch in done:
                problem = self._disk_problem()
                await self._stop(session)
            else:
                problem = f"The code ran longer than the time limit ({self.limits.timeout_seconds:g} s)."
                line = await self._interrupt(session, reply_task)
        except asyncio.CancelledError:
            # The run was cancelled: the code must stop too.
            await self._interrupt(session, reply_task)
            raise
        except (ConnectionError, OSError):
            line = b""
        finally:
            watch.cancel()
            if not reply_task.done():
                reply_task.cancel()
            await asyncio.to_thread(self._kill_strays, session)
        execution, broken = self._parse(line, session, problem)
        if broken:
            await self._stop(session)
        if problem is None and await asyncio.to_thread(_usage, session.workdir) > self.limits.disk_bytes:
            # Written faster than the watch looks: caught here, after the call.
            problem = self._disk_problem()
            execution.error = problem
            execution.logs = (execution.logs + "\n" if execution.logs else "") + problem
        after = await asyncio.to_thread(_snapshot, session.workdir)
        if problem == self._disk_problem():
            await asyncio.to_thread(self._drop_new_files, session, before, after)
            after = before
        execution.files = self._outputs(session, before, after, {item.name for item in inputs})
        return execution

    def _disk_problem(self) -> str:
        return f"The code wrote more than the session's disk limit ({self.limits.disk_bytes // MB} MB)."

    @staticmethod
    def _parse(line: bytes, session: _Session, problem: str | None) -> tuple[Execution, bool]:
        """The call's result, and whether its session is broken and must be ended."""
        if not line:
            if problem is None:
                code = session.process.returncode
                problem = "The code's process ended unexpectedly"
                problem += f" (signal {-code})." if code is not None and code < 0 else "."
            return Execution(
                logs=problem + " Its variables are lost; its files are kept.", error=problem
            ), True
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            broke = "The code's session broke down; its variables are lost."
            return Execution(logs=broke, error=broke), True
        logs = str(reply.get("logs") or "")
        error = reply.get("error")
        message = problem or (f"{error['name']}: {error['value']}" if error else None)
        if problem:
            logs = (logs + "\n" if logs else "") + problem
        images = [base64.b64decode(image) for image in reply.get("images") or []]
        return Execution(logs=logs, images=images, error=message), False

    async def _interrupt(self, session: _Session, reply: asyncio.Future[bytes]) -> bytes:
        """SIGINT, which keeps the session; if the code does not give way, kill the session."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(session.pid, signal.SIGINT)
        try:
            return await asyncio.wait_for(asyncio.shield(reply), INTERRUPT_GRACE_SECONDS)
        except TimeoutError:
            await self._stop(session)
            return b""

    async def _watch_disk(self, session: _Session) -> None:
        while True:
            await asyncio.sleep(DISK_CHECK_SECONDS)
            if await asyncio.to_thread(_usage, session.workdir) > self.limits.disk_bytes:
                return

    def _drop_new_files(
        self, session: _Session, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
    ) -> None:
        for name, seen in after.items():
            if before.get(name) != seen:
                with contextlib.suppress(OSError):
                    (session.workdir / name).unlink()

    def _outputs(
        self,
        session: _Session,
        before: dict[str, tuple[int, int]],
        after: dict[str, tuple[int, int]],
        inputs: set[str],
    ) -> list[OutputFile]:
        files = []
        for name, (size, mtime) in sorted(after.items()):
            if before.get(name) == (size, mtime) or size > self.limits.output_bytes:
                continue
            path = session.workdir / name
            if self.isolated:
                # A hard link to a file the session does not own must never be handed out.
                try:
                    if path.lstat().st_uid != session.uid:
                        continue
                except OSError:
                    continue
            files.append(OutputFile(name=name, path=path, size=size))
            if len(files) >= MAX_OUTPUT_FILES:
                break
        return files

    def _kill_strays(self, session: _Session) -> None:
        """Processes the code left behind (a fork bomb's, a background job) end with the call."""

        def strays() -> list[int]:
            found = _processes_of(session.uid) if self.isolated else _group_members(session.pid)
            return [pid for pid in found if pid != session.pid]

        _kill_all(strays)

    @staticmethod
    def _kill_uid(uid: int) -> None:
        _kill_all(lambda: _processes_of(uid))

    async def _stop(self, session: _Session, *, tell: bool = True) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        else:
            return
        if tell and self._ended is not None:
            # Told from a task of its own: _stop runs under the sandbox's locks, which a database write
            # must not hold up.
            task = asyncio.create_task(self._ended(session.key, session.id))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)
        process = session.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session.pid, signal.SIGKILL)
        if self.isolated:
            await asyncio.to_thread(self._kill_uid, session.uid)
        else:
            await asyncio.to_thread(self._kill_strays, session)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        if self._cgroups is not None:
            with contextlib.suppress(OSError):
                (self._cgroups / str(session.uid)).rmdir()
        self._free_slots.append(session.slot)

    async def _reap_forever(self) -> None:
        interval = min(30.0, max(0.5, self.limits.idle_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.limits.idle_seconds
            for session in list(self._sessions.values()):
                if session.last_used < cutoff and not session.lock.locked():
                    log.info("ending idle code session %s", session.key)
                    await self._stop(session)
