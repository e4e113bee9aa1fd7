"""A real MCP server for the tests, built with the ``mcp`` package's ``MCPServer``: its tools over Streamable
HTTP (``/mcp``) and over SSE (``/sse``, on a second port), in a subprocess on free loopback ports.

Tools: ``add`` (two numbers), ``weather`` (a city's made-up forecast), ``explode`` (always fails) and
``authorization_seen`` (the length and end of the Authorization header the server last received, to check
that a request's ``headers`` reach it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from server import free_port

_SEEN: dict[str, str] = {}


def _app(transport: str) -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    mcp = MCPServer("assistd-test")

    @mcp.tool(description="Add two numbers.")
    def add(a: float, b: float) -> str:
        return str(a + b)

    @mcp.tool(description="The weather forecast of a city.")
    def weather(city: str) -> str:
        return f"Sunny in {city}, 21 degrees."

    @mcp.tool(description="A tool that always fails.")
    def explode(reason: str) -> str:
        raise ToolError(f"boom: {reason}")

    @mcp.tool(description="What the server saw of the Authorization header of the last request.")
    def authorization_seen() -> str:
        # Not the header itself: a test checks that it is kept nowhere in clear, outputs included.
        seen = _SEEN.get("authorization", "")
        return f"{len(seen)} characters ending {seen[-4:]!r}"

    app = mcp.sse_app() if transport == "sse" else mcp.streamable_http_app()

    async def remember(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if "authorization" in headers:
                _SEEN["authorization"] = headers["authorization"]
        await app(scope, receive, send)

    return remember


async def _serve(http_port: int, sse_port: int) -> None:
    import uvicorn

    servers = [
        uvicorn.Server(uvicorn.Config(_app(kind), host="127.0.0.1", port=port, log_level="warning"))
        for kind, port in (("http", http_port), ("sse", sse_port))
    ]
    await asyncio.gather(*(server.serve() for server in servers))


class McpTestServer:
    """The test MCP server in a subprocess: ``url`` (Streamable HTTP) and ``sse_url``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sse_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def sse_url(self) -> str:
        return f"http://127.0.0.1:{self.sse_port}/sse"

    def start(self) -> McpTestServer:
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.port), str(self.sse_port)],
            cwd=Path(__file__).parent,
        )
        deadline = time.monotonic() + 30
        for port in (self.port, self.sse_port):
            while True:
                assert self.process.poll() is None, "the MCP test server exited"
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the MCP test server did not start"
                    time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2])))
