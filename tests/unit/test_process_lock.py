"""The process lock (engine/process_lock.py): a live process's lock is never reported dead, a killed one's
is, once, and only locks of this host's processes are looked at. Real processes, real SIGKILLs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistd.engine.process_lock import ProcessLock, dead_processes

HOLD = """
import sys, time
from pathlib import Path
from assistd.engine.process_lock import ProcessLock
lock = ProcessLock(Path(sys.argv[1]), sys.argv[2])  # kept: the lock lives as long as its file is open
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process_id = f"{socket.gethostname()[:40]}:12345:feedbeef"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), process_id], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield process, process_id
    if process.poll() is None:
        process.kill()
    process.wait()
    process.stdout.close()


def test_a_live_process_is_never_reported_and_a_killed_one_is_once(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], str]
) -> None:
    process, process_id = holder
    with dead_processes(tmp_path, "me") as dead:
        assert dead == []
    process.send_signal(signal.SIGKILL)
    process.wait()
    with dead_processes(tmp_path, "me") as dead:
        assert dead == [process_id]
    # Reported once: its file went with the block that released what it held.
    assert not (tmp_path / f"{process_id}.lock").exists()
    with dead_processes(tmp_path, "me") as dead:
        assert dead == []


def test_a_look_that_fails_keeps_the_dead_process_for_the_next(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], str]
) -> None:
    process, process_id = holder
    process.kill()
    process.wait()
    with pytest.raises(RuntimeError), dead_processes(tmp_path, "me") as dead:
        assert dead == [process_id]
        raise RuntimeError("the database was away")
    with dead_processes(tmp_path, "me") as dead:
        assert dead == [process_id]


def test_its_own_lock_and_other_hosts_locks_are_not_looked_at(tmp_path: Path) -> None:
    own = ProcessLock(tmp_path, f"{socket.gethostname()[:40]}:1:aaaaaaaa")
    assert own.acquire()
    # Another host's process, whose lock nobody here holds: left to its lease, not judged from here.
    (tmp_path / "elsewhere-host:7:bbbbbbbb.lock").write_text("")
    with dead_processes(tmp_path, own.process_id) as dead:
        assert dead == []
    own.release()
    assert list(tmp_path.iterdir()) == [tmp_path / "elsewhere-host:7:bbbbbbbb.lock"]
