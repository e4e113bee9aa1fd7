"""Starts a sandboxed worker: ``python -I -m assistd.sandbox.launcher CONFIG_JSON``.

Run as root, it puts itself in new mount and network namespaces, gives the sandbox its own view of the
file system (``/mnt/data`` = the session's directory, read-only interpreter and libraries under ``/mnt``,
small private ``/tmp``), sets resource limits, drops to the session's unprivileged uid and replaces itself
with the worker. Run as another user (the fallback), it tries a user + network namespace and otherwise
has the worker refuse sockets in Python; it still sets every limit. It is a process of its own, started
by the server, so that nothing of this happens in a forked copy of the (threaded) server.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

SANDBOX_ROOT = "/mnt"
SANDBOX_DATA = "/mnt/data"
SANDBOX_PYTHON = "/mnt/python"
CAPTURE = "/tmp/.assistd-output"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _unshare(flags: int) -> None:
    unshare: Any = _libc.unshare
    _check(unshare(flags), "unshare")


def _encode(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    mount: Any = _libc.mount
    result = mount(_encode(source), _encode(target), _encode(fstype), ctypes.c_ulong(flags), _encode(data))
    _check(result, f"mount {target}")


def _bind(source: str, target: str, *, read_only: bool) -> None:
    os.makedirs(target, exist_ok=True)
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _limit(limits: dict[str, int], extra_processes: int = 0) -> None:
    pairs = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_NPROC, limits["processes"] + extra_processes),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_CORE, 0),
    ]
    for kind, value in pairs:
        resource.setrlimit(kind, (value, value))


def _kernel_at_least(major: int, minor: int) -> bool:
    numbers = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return numbers is not None and (int(numbers[1]), int(numbers[2])) >= (major, minor)


def _tasks_of(uid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += len(os.listdir(entry / "task"))
        except OSError:
            continue
    return count


def _isolated(config: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Namespaces and the sandbox's view of the file system; returns the interpreter and worker config."""
    _unshare(CLONE_NEWNS | CLONE_NEWNET)
    # Nothing mounted from here on may leak back to the host's mount table.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    uid = int(config["uid"])
    os.makedirs(SANDBOX_ROOT, exist_ok=True)
    _mount("tmpfs", SANDBOX_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    _bind(config["workdir"], SANDBOX_DATA, read_only=False)
    _bind(config["python_prefix"], SANDBOX_PYTHON, read_only=True)
    site_dirs = []
    for number, directory in enumerate(config["site_dirs"]):
        target = f"{SANDBOX_ROOT}/site{number}"
        _bind(directory, target, read_only=True)
        site_dirs.append(target)
    # The server's own places (its data, its working directory with any .env, its database) are covered
    # by empty, closed directories; what was bound above stays reachable through /mnt.
    for place in config.get("hide", []):
        if os.path.isdir(place):
            _mount("tmpfs", place, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=000")
    # A /proc of its own that shows only the session's processes. Before Linux 5.8 every proc mount shared
    # its options, so this would have hidden processes on the host too: there the host's /proc is kept.
    if _kernel_at_least(5, 8):
        with contextlib.suppress(OSError):
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    # Private temporary directories, mounted after the binds: what is bound may itself live under /tmp.
    tmp_size = f"size={config['limits']['tmp_bytes']}"
    for place in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(place):
            _mount("tmpfs", place, "tmpfs", MS_NOSUID | MS_NODEV, f"{tmp_size},mode=1777")
    _limit(config["limits"])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    python = f"{SANDBOX_PYTHON}/bin/{config['python_name']}"
    worker = {"workdir": SANDBOX_DATA, "capture": CAPTURE, "site_dirs": site_dirs, "block_sockets": False}
    env = {"LD_LIBRARY_PATH": f"{SANDBOX_PYTHON}/lib", "HOME": SANDBOX_DATA, "TMPDIR": "/tmp"}
    return python, worker, env


def _fallback(config: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """No root: the best a normal user can do. Same uid as the server, so files are not separated."""
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        block = False
    except OSError:
        block = True
    # RLIMIT_NPROC counts every process of the uid, the server's own threads included.
    _limit(config["limits"], extra_processes=_tasks_of(os.getuid()))
    worker = {
        "workdir": config["workdir"],
        "capture": config["capture"],
        "site_dirs": [],
        "block_sockets": block,
    }
    return sys.executable, worker, {"HOME": config["workdir"], "TMPDIR": config["workdir"]}


def main() -> None:
    config = json.loads(sys.argv[1])
    kernel = Path(config["kernel"]).read_text(encoding="utf-8")
    if config.get("cgroup"):
        # Joined while still root; every process the session starts stays in it.
        Path(config["cgroup"]).write_text(str(os.getpid()))
    python, worker, env = _isolated(config) if config["isolate"] else _fallback(config)
    env.update(
        {
            "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": config.get("mpl_dir") or "/tmp/matplotlib",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    os.chdir(worker["workdir"])
    os.execve(python, [python, "-I", "-c", kernel, json.dumps(worker)], env)


if __name__ == "__main__":
    main()
