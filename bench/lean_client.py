"""A lean load generator for the throughput benchmark: the requests the SDK's helpers send, without the SDK.

On this 2-core machine the benchmark's clients share the cores with the server, and the official SDK spends
about 2 ms of CPU per request (request building, httpx, pydantic models), a third of the machine at the
rates measured. This client sends what ``threads.create`` and ``runs.create_and_poll`` send, over one
keep-alive HTTP/1.1 connection per client (plain asyncio streams, JSON bodies), and follows the same poll
loop: a retrieve with ``X-Stainless-Poll-Helper: true`` until the run leaves queued/in_progress/cancelling,
sleeping ``openai-poll-after-ms`` between polls. It checks the status line and decodes every body.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

POLL_STATUSES = frozenset({"queued", "in_progress", "cancelling"})


class LeanError(Exception):
    pass


class LeanClient:
    """One HTTP/1.1 connection to ``base_url`` (``http://host:port/v1``)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._headers = (
            f"Host: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {api_key}\r\n"
            "OpenAI-Beta: assistants=v2\r\n"
            "Accept: application/json\r\n"
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, extra: str = ""
    ) -> tuple[dict[str, Any], dict[str, str]]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._headers}{extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + payload)
        status_line = await self._reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        data = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        decoded = json.loads(data) if data else {}
        if status != 200:
            raise LeanError(f"{method} {path}: {status} {decoded}")
        return decoded, headers

    async def create_thread(self, content: str) -> str:
        thread, _ = await self.request(
            "POST", "/threads", {"messages": [{"role": "user", "content": content}]}
        )
        return str(thread["id"])

    async def create_and_poll(self, thread_id: str, assistant_id: str) -> dict[str, Any]:
        path = f"/threads/{thread_id}/runs"
        run, headers = await self.request("POST", path, {"assistant_id": assistant_id})
        while run["status"] in POLL_STATUSES:
            poll = "X-Stainless-Poll-Helper: true\r\n"
            run, headers = await self.request("GET", f"{path}/{run['id']}", extra=poll)
            if run["status"] in POLL_STATUSES:
                await asyncio.sleep(int(headers.get("openai-poll-after-ms", "1000")) / 1000)
        return run
