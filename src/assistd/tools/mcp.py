"""MCP servers as a response's tools: the client (the official ``mcp`` package), the outbound policy, and the
sealing of the headers a request gives for a server.

Transport: a ``server_url`` whose path ends in ``/sse`` is spoken to over the SSE transport (the older one,
whose endpoint is conventionally ``/sse``); any other over Streamable HTTP (the current one). No probing of
one then the other: a wrong guess would cost a failed connection on every call, and the path says which one a
server serves.

Outbound policy (``ASSISTD_MCP_ALLOWED_HOSTS``): a server whose host name resolves to a loopback, link-local,
private, reserved or otherwise non-global address (the cloud metadata address 169.254.169.254 among them) is
refused unless its host (or ``host:port``) is listed. Every address the name resolves to is checked: one
private address among public ones is refused. The connection is made to the address that was checked, not
to the name resolved again (a name whose answer changes in between, DNS rebinding, cannot lead it
elsewhere): the ``mcp`` client's HTTP client is given a transport that connects to that address while the
request keeps the name in its Host header and TLS its server name (SNI) and certificate check.

Each listing or call opens its own connection and session: nothing is kept between calls (a run may be
executed by any process), and a call is bounded by ``ASSISTD_MCP_TIMEOUT_SECONDS`` as a whole (connecting,
the handshake and the call).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

__all__ = [
    "McpCallResult",
    "McpError",
    "McpTool",
    "Sealer",
    "call_tool",
    "check_host",
    "list_tools",
]


class McpError(Exception):
    """A server that could not be reached, listed or called: ``error`` is the item's error as OpenAI
    shapes it (``{type: "mcp_protocol_error" | "http_error", code, message}``)."""

    def __init__(self, message: str, *, kind: str = "mcp_protocol_error", code: int = -32000) -> None:
        super().__init__(message)
        self.message = message
        self.error = {"type": kind, "code": code, "message": message}


@dataclass(frozen=True)
class McpTool:
    """A tool a server lists, as an ``mcp_list_tools`` item shows it."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None

    def shown(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "annotations": self.annotations,
        }


@dataclass(frozen=True)
class McpCallResult:
    """A call's outcome: its text ``output``, or its ``error`` (the tool failed: what it said, for the model
    too)."""

    output: str | None
    error: dict[str, Any] | None


# The outbound policy --------------------------------------------------------------------------------


def _listed(host: str, port: int, allowed: Collection[str]) -> bool:
    names = {entry.strip().lower() for entry in allowed if entry.strip()}
    # An IPv6 host may be listed bare or in brackets, as URLs write it (``[::1]:8000``).
    forms = {host.lower(), f"[{host.lower()}]"} if ":" in host else {host.lower()}
    return any(form in names or f"{form}:{port}" in names for form in forms)


async def check_host(url: str, allowed: Collection[str]) -> str:
    """The address to connect to for ``url``, once checked; raise ``McpError`` unless ``url`` may be
    connected to: an http(s) URL whose host is listed in ``allowed`` (a host, or ``host:port``), or
    resolves to public addresses only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise McpError(f"The MCP server URL must be an http or https URL: {parts.scheme}://...", code=-32602)
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise McpError("The MCP server URL has an invalid port.", code=-32602) from None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise McpError(f"Could not resolve the MCP server's host {host!r}: {exc.strerror or exc}") from None
    if not infos:
        raise McpError(f"Could not resolve the MCP server's host {host!r}.")
    first = str(infos[0][4][0])
    if _listed(host, port, allowed):
        return first
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise McpError(
                f"The MCP server's host {host!r} resolves to a non-public address ({address}), which this "
                "server may not connect to: list it in ASSISTD_MCP_ALLOWED_HOSTS to allow it.",
                kind="http_error",
                code=403,
            )
    return first


# The client --------------------------------------------------------------------------------------


def _pinned_factory(host: str, address: str) -> Any:
    """An ``mcp`` HTTP client factory whose clients connect to ``address`` for requests to ``host``."""
    import httpx2

    class Pinned(httpx2.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            if request.url.host == host:
                # Another request: the client's own keeps its URL (redirects and SSE endpoints are resolved
                # against it). Its Host header was set from that URL; TLS is told the name to ask for
                # and to check the certificate against.
                request = httpx2.Request(
                    request.method,
                    request.url.copy_with(host=address),
                    headers=request.headers,
                    stream=request.stream,
                    extensions={**request.extensions, "sni_hostname": host},
                )
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    def factory(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=Pinned(), headers=headers, timeout=timeout, auth=auth)

    return factory


@contextlib.asynccontextmanager
async def _client(url: str, headers: Mapping[str, str], seconds: float, address: str) -> AsyncIterator[Any]:
    # Imported here: the ``mcp`` package is only needed by servers whose responses use MCP tools.
    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    factory = _pinned_factory(urlsplit(url).hostname or "", address)
    transport: Any
    # A client given to the Streamable HTTP transport is the giver's to close (the SSE one closes its own).
    http: httpx2.AsyncClient | None = None
    if urlsplit(url).path.rstrip("/").endswith("/sse"):
        transport = sse_client(
            url,
            headers=dict(headers),
            timeout=seconds,
            sse_read_timeout=seconds,
            httpx_client_factory=factory,
        )
    else:
        http = factory(headers=dict(headers), timeout=httpx2.Timeout(seconds))
        transport = streamable_http_client(url, http_client=http)
    async with contextlib.AsyncExitStack() as stack:
        if http is not None:
            await stack.enter_async_context(http)
        # mode "legacy": the initialize handshake every server answers (no ``server/discover`` probe first).
        yield await stack.enter_async_context(Client(transport, mode="legacy", cache=None))


def _failure(exc: BaseException) -> McpError:
    if isinstance(exc, McpError):
        return exc
    if isinstance(exc, TimeoutError):
        return McpError("The MCP server did not answer in time.", code=-32001)
    # An exception group (anyio's task groups wrap the transport's errors): its first leaf says why.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return McpError(f"The MCP server answered HTTP {status}.", kind="http_error", code=status)
    error = getattr(exc, "error", None)
    if error is not None and isinstance(getattr(error, "code", None), int):
        return McpError(str(getattr(error, "message", exc)), code=int(error.code))
    # The URL is not repeated: it may carry credentials in its query.
    return McpError(f"Could not reach the MCP server: {type(exc).__name__}: {exc}"[:500])


async def list_tools(url: str, headers: Mapping[str, str], seconds: float, address: str) -> list[McpTool]:
    """The tools the server at ``url`` (connected to at ``address``, ``check_host``'s) lists (all pages).
    Raises ``McpError``."""
    try:
        async with asyncio.timeout(seconds), _client(url, headers, seconds, address) as client:
            tools: list[McpTool] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                for tool in page.tools:
                    annotations = tool.annotations.model_dump(exclude_none=True) if tool.annotations else None
                    tools.append(McpTool(tool.name, tool.description, dict(tool.input_schema), annotations))
                cursor = page.next_cursor
                if not cursor:
                    return tools
    except Exception as exc:
        raise _failure(exc) from None


async def call_tool(
    url: str, headers: Mapping[str, str], name: str, arguments: str, seconds: float, address: str
) -> McpCallResult:
    """Call tool ``name`` with ``arguments`` (the model's JSON) on the server at ``url``, connected to at
    ``address`` (``check_host``'s). A tool that fails, or a server that cannot be reached or does not
    answer within ``seconds``, gives an error result, never an exception."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return McpCallResult(None, McpError(f"The arguments are not JSON: {exc}", code=-32602).error)
    if not isinstance(parsed, dict):
        return McpCallResult(None, McpError("The arguments must be a JSON object.", code=-32602).error)
    try:
        async with asyncio.timeout(seconds), _client(url, headers, seconds, address) as client:
            result = await client.call_tool(name, parsed)
    except Exception as exc:
        return McpCallResult(None, _failure(exc).error)
    content = [block.model_dump(mode="json", exclude_none=True, by_alias=True) for block in result.content]
    if result.is_error:
        return McpCallResult(None, {"type": "mcp_tool_execution_error", "content": content})
    texts = [block["text"] for block in content if block.get("type") == "text"]
    if texts:
        return McpCallResult("\n".join(texts), None)
    if result.structured_content is not None:
        return McpCallResult(json.dumps(result.structured_content), None)
    return McpCallResult(json.dumps(content), None)


def error_text(error: Mapping[str, Any]) -> str:
    """An error as the text the model gets for its call's output."""
    if error.get("type") == "mcp_tool_execution_error":
        texts = [
            str(b.get("text")) for b in error.get("content") or [] if isinstance(b, dict) and "text" in b
        ]
        return "Error: " + ("\n".join(texts) or json.dumps(error.get("content")))
    return f"Error: {error.get('message', 'the call failed')}"


# Sealed headers -----------------------------------------------------------------------------------


class Sealer:
    """Seals a request's MCP ``headers`` (an Authorization token, say) for storage with its run, so that the
    process that executes the run can use them and the database never holds them in clear.

    The key is ``ASSISTD_MCP_SECRET_KEY`` (any string: every process and replica of a deployment must have
    the same one), else a key made once and kept in ``<data dir>/mcp-secret.key`` (mode 0600)."""

    def __init__(self, secret: str | None, data_dir: Path) -> None:
        self._secret = secret
        self._data_dir = data_dir
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            if self._secret:
                digest = hashlib.sha256(self._secret.encode()).digest()
                self._fernet = Fernet(base64.urlsafe_b64encode(digest))
            else:
                self._fernet = Fernet(self._stored_key())
        return self._fernet

    def _stored_key(self) -> bytes:
        path = self._data_dir / "mcp-secret.key"
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # Written whole under another name, then linked into place: a process reading it never sees it half
        # written, and of two processes making it at once the first link wins (the other reads it).
        draft = path.with_name(f".mcp-secret-{os.getpid()}-{os.urandom(4).hex()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key)
        try:
            os.link(draft, path)
        except FileExistsError:
            return path.read_bytes().strip()
        finally:
            draft.unlink()
        return key

    def seal(self, headers: Mapping[str, str]) -> str:
        return self._key().encrypt(json.dumps(dict(headers)).encode()).decode()

    def unseal(self, token: str) -> dict[str, str]:
        """The headers; none when the token cannot be opened (the key changed): the server then answers
        as it does to a request without them."""
        try:
            opened = json.loads(self._key().decrypt(token.encode()))
        except (InvalidToken, ValueError):
            return {}
        return {str(k): str(v) for k, v in opened.items()}
