"""Starts the real assistd server (``python -m assistd serve``) on a free port for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hosts import Host

KEYS = ("sk-test-alpha", "sk-test-beta")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AssistdServer:
    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        env: dict[str, str] | None = None,
        *,
        host: Host | None = None,
        args: tuple[str, ...] = (),
        worker: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra_env = env or {}
        # On a test host (a network namespace): reached at its address, any port is free there.
        self.host = host
        self.args = args
        # `assistd worker`: no HTTP; ready once its log says it executes.
        self.worker = worker
        self.port = free_port() if host is None else 8000
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://{self.host.address if self.host else '127.0.0.1'}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 30.0) -> AssistdServer:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ASSISTD_")},
            "ASSISTD_DATA_DIR": str(self.data_dir),
            "ASSISTD_DATABASE_URL": self.database_url,
            "ASSISTD_API_KEYS": ",".join(KEYS),
            "ASSISTD_UPSTREAM_RETRY_BASE_SECONDS": "0.05",
            "ASSISTD_MAINTENANCE_INTERVAL_SECONDS": "0.2",
            # Tests often stop servers with runs still in flight: a short grace keeps each stop short
            # (test_graceful_shutdown.py sets its own).
            "ASSISTD_SHUTDOWN_GRACE_SECONDS": "1",
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        argv = [sys.executable, "-m", "assistd"]
        if self.worker:
            argv += ["worker", "--log-level", "info"]
        else:
            argv += ["serve", "--port", str(self.port), "--log-level", "warning"]
            if self.host is not None:
                argv += ["--host", self.host.address]
        if self.host is not None:
            argv = self.host.command(argv)
        self.process = subprocess.Popen(
            [*argv, *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"assistd exited at start:\n{self.log()}")
            if self.worker:
                if "worker executing" in self.log():
                    return self
                time.sleep(0.05)
                continue
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"assistd did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Die as a crashed process does: no shutdown, no cleanup."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
