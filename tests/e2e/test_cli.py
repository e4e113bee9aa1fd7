"""``assistd serve`` as a user starts it: loopback-only without keys, settings from a ``.env`` file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from server import free_port


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port``, read from the kernel's table."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if int(port_hex, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def _start(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "serve.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTD_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "assistd", *args],
            env={**clean, **env},
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
    return process, log


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"server not ready:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_serve_without_keys_binds_loopback_only_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    process, log = _start(
        tmp_path, ["serve", "--host", "0.0.0.0", "--port", str(port)], {"ASSISTD_DATA_DIR": str(tmp_path)}
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
        assert "no ASSISTD_API_KEYS are set: binding 127.0.0.1 instead of 0.0.0.0" in log.read_text()
        # Without keys any key is accepted: one default tenant.
        with OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="whatever", max_retries=0) as client:
            created = client.beta.assistants.create(model="m")
        with OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="other", max_retries=0) as client:
            assert client.beta.assistants.retrieve(created.id).id == created.id
    finally:
        _stop(process)
    # The default database lives in the data directory.
    assert (tmp_path / "assistd.db").exists()


def test_serve_reads_a_dotenv_file_in_the_working_directory(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(
        f"ASSISTD_API_KEYS=sk-from-dotenv\nASSISTD_DATABASE_URL=sqlite:///{tmp_path / 'dotenv.db'}\n"
    )
    process, log = _start(tmp_path, ["serve", "--port", str(port)], {})
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/assistants").status_code == 401
        ok = httpx.get(
            f"http://127.0.0.1:{port}/v1/assistants", headers={"Authorization": "Bearer sk-from-dotenv"}
        )
        assert ok.status_code == 200
        assert ok.json()["object"] == "list"
    finally:
        _stop(process)
    assert (tmp_path / "dotenv.db").exists()


@pytest.mark.parametrize("argv", [["--version"], ["serve", "--help"]])
def test_cli_entry_points(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "assistd", *argv], capture_output=True, text=True, check=True
    )
    assert "assistd" in result.stdout
