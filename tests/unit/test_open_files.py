"""assistd raises its soft limit on open files to the hard limit at start, and says when that is too few
for the runs it may stream at once (bench/capacity.py: two descriptors per streaming run)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _in_a_process(soft: int, hard: int, workers: int) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        f"""
        import logging, resource
        logging.basicConfig(level="WARNING", format="%(levelname)s %(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from assistd.cli import raise_open_files_limit
        print(raise_open_files_limit({workers}), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=60
    )


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard < 4096:
        pytest.skip(f"this machine's hard limit ({hard}) leaves nothing to show")
    done = _in_a_process(256, hard, 1000)
    assert done.stdout.split() == [str(hard), str(hard)]
    assert "WARNING" not in done.stderr


def test_a_hard_limit_too_low_for_the_runs_is_reported() -> None:
    done = _in_a_process(512, 512, 1000)
    assert done.stdout.split() == ["512", "512"]
    assert "this process may open 512 files; 1000 runs streaming at once need about 2256" in done.stderr
