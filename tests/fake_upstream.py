"""A scripted, OpenAI-compatible Chat Completions server: the fake upstream LLM.

This is the only thing the test-suite and the benchmarks are allowed to fake.  It is a real HTTP
server (uvicorn on ``127.0.0.1``, a free port), speaking the wire format of the OpenAI API closely
enough that the official ``openai`` SDK parses every answer:

* ``POST /v1/chat/completions`` -- streaming (SSE ``data: {...}`` chunks ending ``data: [DONE]``,
  with a final ``usage`` chunk when ``stream_options.include_usage`` is set) and non-streaming.
* ``GET /v1/models`` and ``GET /v1/models/{id}``.
* ``POST /v1/embeddings`` -- deterministic hash-based vectors (``float`` or ``base64`` encoding).

The same routes are also served without the ``/v1`` prefix.

In-process use (synchronous tests)::

    fake = FakeUpstream().start()          # uvicorn in a daemon thread, ready on return
    fake.push(Text("Hi there"), ToolCalls([("get_weather", '{"city": "Paris"}')]))
    ...                                    # point the code under test at fake.base_url
    assert fake.requests[0]["model"] == "fake-model"
    fake.stop()

Every chat completions request consumes exactly one queued reply (FIFO); when the queue is empty,
``fake.default`` answers (``Text("Hello from the fake upstream.")`` unless configured).

Out-of-process use (benchmarks)::

    python tests/fake_upstream.py --port 8123 --instant [--echo] [--model NAME ...]

Notes on the failure replies, as they behave with uvicorn:

* ``Hang(seconds)`` sends nothing (not even headers) for ``seconds``.  If the client gives up
  first, the hang ends at once (disconnects are watched).  When it elapses, the reply given as
  ``then`` is sent; without one the server sends the response headers and closes the connection
  without a body (uvicorn logs "ASGI callable returned without completing response."), which
  clients see as a truncated response (``httpx.RemoteProtocolError`` ->
  ``openai.APIConnectionError``).
* ``Drop()`` sends the status line, headers, the role chunk and one content chunk, then returns from
  the ASGI callable without finishing the chunked body; uvicorn then closes the TCP connection
  (and logs the same error line).  The client sees "peer closed connection without sending
  complete message body (incomplete chunked read)" -- ``openai.APIConnectionError`` while
  iterating a stream.  For a non-streaming request, half of a ``Content-Length`` body is sent.
* ``StreamError(...)`` sends a well-formed stream that carries an in-band
  ``data: {"error": {...}}`` event (what OpenAI does on mid-stream failures); the SDK raises
  ``openai.APIError`` while iterating.
* ``Raw(events)`` sends a 200 stream whose events after the role chunk (and ``text``) are the given
  bytes verbatim: malformed chunks (not JSON, the wrong shape) as a broken upstream sends them.
* ``Stall(seconds)`` streams ``text``, then sends nothing for ``seconds`` with the connection open
  (a stall mid-stream, past a client's read timeout), then finishes with ``rest`` or closes unfinished.

``stop()`` cancels replies still in flight (a ``Hang``, a slow stream) instead of waiting for them; a
client still connected then gets uvicorn's plain-text 500 (or a truncated stream).

``instant=True`` (``--instant``) ignores ``delay_s``/``chunk_delay_s`` of every reply and writes a
whole stream with a single ``send`` -- minimal latency for benchmarks.  ``Hang``, ``Drop`` and
``StreamError`` keep their behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import uvicorn

__all__ = [
    "DEFAULT_TEXT",
    "Drop",
    "Dynamic",
    "Echo",
    "Error",
    "FakeUpstream",
    "Hang",
    "Raw",
    "Reply",
    "Stall",
    "StreamError",
    "Text",
    "ToolCalls",
    "fake_logprob",
    "main",
]

DEFAULT_TEXT = "Hello from the fake upstream."
DEFAULT_MODELS = ("fake-model",)
EMBEDDING_DIM = 8
# text-embedding-3-large's size, the largest OpenAI's models make.
MAX_EMBEDDING_DIM = 3072

Message: TypeAlias = dict[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


# --------------------------------------------------------------------------------------------------
# Scripted replies
# --------------------------------------------------------------------------------------------------


@dataclass
class Text:
    """An assistant text answer, streamed as ``chunks`` (default: split into word-ish pieces). When the
    request asks for logprobs, each chunk carries its piece's, as one token (``fake_logprob``)."""

    text: str
    chunks: list[str] | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    prompt_tokens: int = 10
    completion_tokens: int | None = None
    finish_reason: str = "stop"
    # Sent as ``usage.prompt_tokens_details.cached_tokens`` / ``completion_tokens_details.reasoning_tokens``
    # when given (the details are left out otherwise, as many OpenAI-compatible servers do).
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return split_words(self.text)


@dataclass
class ToolCalls:
    """One or more function calls, ``finish_reason="tool_calls"``.

    ``calls`` items are ``(name, arguments)`` tuples or dicts ``{"name", "arguments", "id"?}``;
    ``arguments`` may be a JSON string or a JSON-serialisable object.  Ids default to ``call_...``.
    Each call's arguments are streamed in ``argument_pieces`` delta pieces.  ``text`` optionally
    precedes the calls as assistant content.
    """

    calls: Sequence[tuple[str, Any] | Mapping[str, Any]]
    text: str | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    prompt_tokens: int = 10
    completion_tokens: int | None = None
    finish_reason: str = "tool_calls"
    argument_pieces: int = 3
    _resolved: list[tuple[str, str, str]] | None = field(default=None, init=False, repr=False, compare=False)

    def resolved(self) -> list[tuple[str, str, str]]:
        """``[(id, name, arguments_json)]``, ids fixed on first use."""
        if self._resolved is None:
            out: list[tuple[str, str, str]] = []
            for call in self.calls:
                if isinstance(call, Mapping):
                    fn = call.get("function")
                    src: Mapping[str, Any] = fn if isinstance(fn, Mapping) else call
                    name = str(src["name"])
                    args: Any = src.get("arguments", "{}")
                    call_id = str(call.get("id") or _new_id("call_"))
                else:
                    name, args = call
                    call_id = _new_id("call_")
                if not isinstance(args, str):
                    args = json.dumps(args)
                out.append((call_id, name, args))
            self._resolved = out
        return self._resolved


@dataclass
class Error:
    """Answer with HTTP ``status`` and an OpenAI-shaped error body (or ``body`` verbatim)."""

    status: int
    message: str = "Scripted error from the fake upstream."
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    type: str | None = None
    code: str | None = None
    delay_s: float = 0.0

    def payload(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        default_type, default_code = _ERROR_KINDS.get(self.status, ("server_error", None))
        if self.status not in _ERROR_KINDS and self.status < 500:
            default_type = "invalid_request_error"
        return {
            "error": {
                "message": self.message,
                "type": self.type or default_type,
                "param": None,
                "code": self.code if self.code is not None else default_code,
            }
        }


_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", None),
}


@dataclass
class StreamError:
    """A 200 stream that sends ``text`` as content, then an in-band ``{"error": {...}}`` event.

    The stream ends after the error event (no ``[DONE]``).  A non-streaming request gets HTTP
    ``status`` with the same error body instead.
    """

    message: str = "The server had an error while processing your request."
    text: str = ""
    type: str = "server_error"
    code: str | None = None
    status: int = 500
    delay_s: float = 0.0

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


@dataclass
class Hang:
    """Accept the request and send nothing for ``seconds`` (ends early if the client disconnects).

    Afterwards answer with ``then`` if given, else send headers and close the connection.
    """

    seconds: float
    then: Reply | None = None


@dataclass
class Drop:
    """Send one content chunk (``text``), then close the connection abruptly."""

    text: str = "Hello"
    delay_s: float = 0.0


@dataclass
class Raw:
    """A 200 stream: the role chunk, ``text``, then ``events`` verbatim (each a whole SSE event, such as
    ``b"data: {not json\\n\\n"``), then ``[DONE]`` unless ``done`` is false.  A non-streaming request gets
    the events' bytes as its JSON body."""

    events: list[bytes]
    text: str = ""
    done: bool = True


@dataclass
class Stall:
    """Stream ``text``, then send nothing for ``seconds`` with the connection open; then finish the answer
    with ``rest``, or (``rest=None``) close the connection without finishing it.  Ends early if the client
    disconnects."""

    seconds: float
    text: str = ""
    rest: str | None = None


@dataclass
class Dynamic:
    """Decide the reply from the request body: ``fn(body) -> Reply``.  Called on the server loop."""

    fn: Callable[[dict[str, Any]], Reply]


@dataclass
class Echo:
    """Reply with ``prefix`` + the text of the last user message."""

    prefix: str = "echo: "
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    prompt_tokens: int = 10

    def build(self, body: Mapping[str, Any]) -> Text:
        return Text(
            self.prefix + last_user_text(body),
            delay_s=self.delay_s,
            chunk_delay_s=self.chunk_delay_s,
            prompt_tokens=self.prompt_tokens,
        )


Reply: TypeAlias = Text | ToolCalls | Error | StreamError | Hang | Drop | Raw | Stall | Dynamic | Echo


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """Split into word-ish pieces whose concatenation is ``text`` (``[""]`` for empty text)."""
    pieces: list[str] = _WORDS.findall(text)
    return pieces or [""]


def split_even(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` non-empty consecutive pieces (``[""]`` if empty)."""
    if not text:
        return [""]
    n = max(1, min(n, len(text)))
    size = math.ceil(len(text) / n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text content of the last ``role == "user"`` message ('' when there is none)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if not isinstance(message, Mapping) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "text"
            )
        return ""
    return ""


def fake_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic unit vector derived from sha256(text)."""
    data = b""
    block = hashlib.sha256(text.encode("utf-8")).digest()
    while len(data) < 4 * dim:
        data += block
        block = hashlib.sha256(block).digest()
    raw = [struct.unpack_from("<I", data, 4 * i)[0] / 0xFFFFFFFF * 2.0 - 1.0 for i in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


def _format_retry_after(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class FakeUpstream:
    """A scripted OpenAI-compatible upstream.  Thread-safe: script it from any thread."""

    def __init__(
        self,
        models: list[str] | None = None,
        *,
        default: Reply | None = None,
        instant: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ) -> None:
        self.models: list[str] = list(models) if models else list(DEFAULT_MODELS)
        self.default: Reply = default if default is not None else Text(DEFAULT_TEXT)
        self.instant = instant
        #: Keep request bodies/headers (``requests``...).  Off for long benchmark runs.
        self.record = record
        self.host = host
        self._requested_port = port
        self._lock = threading.Condition()
        self._queue: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._request_headers: list[dict[str, str]] = []
        self._request_times: list[float] = []
        self._embedding_requests: list[dict[str, Any]] = []
        self._embedding_errors: deque[Error] = deque()
        self._served = 0
        self._chats_open = 0
        self._chats_peak = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Future[Any]] = set()
        self._thread_error: BaseException | None = None
        self.port: int | None = None

    # ---- scripting ------------------------------------------------------------------------------

    def push(self, *replies: Reply | str) -> None:
        """Queue replies; each chat request consumes one, FIFO.  A ``str`` means ``Text(str)``."""
        with self._lock:
            for reply in replies:
                self._queue.append(Text(reply) if isinstance(reply, str) else reply)

    def push_embedding_error(self, *errors: Error) -> None:
        """Queue errors that the next embeddings requests answer, one each, FIFO (chat replies stay)."""
        with self._lock:
            self._embedding_errors.extend(errors)

    def reset(self) -> None:
        """Clear queued replies and every recorded request."""
        with self._lock:
            self._queue.clear()
            self._embedding_errors.clear()
            self._requests.clear()
            self._request_headers.clear()
            self._request_times.clear()
            self._embedding_requests.clear()
            self._served = 0
            self._chats_peak = self._chats_open

    @property
    def queued(self) -> int:
        """How many scripted replies are still waiting."""
        with self._lock:
            return len(self._queue)

    @property
    def peak_concurrency(self) -> int:
        """The most chat completions requests open at once (since the start or the last ``reset``)."""
        with self._lock:
            return self._chats_peak

    @property
    def served(self) -> int:
        """How many chat completions requests were answered (counted even when not recording)."""
        with self._lock:
            return self._served

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the JSON bodies of every chat completions request, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (lower-cased names) of every chat completions request, parallel to ``requests``."""
        with self._lock:
            return [dict(h) for h in self._request_headers]

    @property
    def request_times(self) -> list[float]:
        """When (``time.monotonic()``) each chat request arrived, parallel to ``requests``."""
        with self._lock:
            return list(self._request_times)

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._embedding_requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` chat requests were received; returns ``requests``."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._served >= count, timeout):
                raise TimeoutError(f"fake upstream got {self._served} chat requests, wanted {count}")
            return list(self._requests)

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` -- what an OpenAI client takes as ``base_url``."""
        return self.root_url + "/v1"

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            lifespan="off",
            ws="none",
            access_log=False,
            log_config=None,  # leave global logging configuration alone
            log_level=None,
            timeout_graceful_shutdown=3,
            timeout_keep_alive=30,
        )
        return uvicorn.Server(config)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return sock

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        await server.serve(sockets=[sock])

    def _run_thread(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                runner.run(self._serve(server, sock))
        except BaseException as exc:  # surfaced by start()
            self._thread_error = exc

    def start(self, timeout: float = 10.0) -> FakeUpstream:
        """Serve in a daemon thread on a free port; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        sock = self._bind()
        server = self._make_server()
        self._sock, self._server = sock, server
        self._thread = threading.Thread(
            target=self._run_thread, args=(server, sock), name=f"fake-upstream-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                error = self._thread_error
                self.stop()
                raise RuntimeError("fake upstream failed to start") from error
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel in-flight replies, shut uvicorn down and join its thread.  Idempotent."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is not None:
            server.should_exit = True
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # loop closed in between
                    loop.call_soon_threadsafe(self._cancel_inflight)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                if server is not None:
                    server.force_exit = True
                thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = self._loop = None
        self.port = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (uvicorn handles SIGINT/SIGTERM)."""
        sock = self._bind()
        server = self._make_server()
        self._sock, self._server = sock, server
        try:
            with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                runner.run(self._serve(server, sock))
        finally:
            sock.close()
            self._server = self._sock = self._loop = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _cancel_inflight(self) -> None:
        for task in list(self._inflight):
            task.cancel()

    # ---- request plumbing -----------------------------------------------------------------------

    def _take(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            if self.record:
                self._requests.append(body)
                self._request_headers.append(headers)
                self._request_times.append(time.monotonic())
            self._served += 1
            reply = self._queue.popleft() if self._queue else self.default
            self._lock.notify_all()
        return reply

    @staticmethod
    def _resolve(reply: Reply, body: dict[str, Any]) -> Reply:
        for _ in range(16):
            if isinstance(reply, Dynamic):
                reply = reply.fn(body)
            elif isinstance(reply, Echo):
                return reply.build(body)
            else:
                return reply
        raise RuntimeError("Dynamic replies nested too deeply")

    async def _asgi(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/")
        if path.startswith("/v1/") or path == "/v1":
            path = path[3:]
        body_bytes = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body_bytes += message.get("body", b"")
            if not message.get("more_body", False):
                break

        if path == "/models" and method == "GET":
            await self._send_json(send, 200, self._models_payload())
            return
        if path.startswith("/models/") and method == "GET":
            model_id = path[len("/models/") :]
            if model_id in self.models:
                await self._send_json(send, 200, self._model_obj(model_id))
            else:
                err = Error(404, f"The model '{model_id}' does not exist", code="model_not_found")
                await self._send_json(send, 404, err.payload())
            return
        if path not in ("/chat/completions", "/embeddings"):
            await self._send_json(send, 404, Error(404, f"Unknown path {scope['path']}", code=None).payload())
            return
        if method != "POST":
            await self._send_json(send, 405, Error(405, "Method not allowed").payload())
            return
        try:
            body = json.loads(body_bytes or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await self._send_json(send, 400, Error(400, "Request body must be a JSON object").payload())
            return
        if path == "/embeddings":
            await self._embeddings(body, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        reply = self._take(body, headers)
        with self._lock:
            self._chats_open += 1
            self._chats_peak = max(self._chats_peak, self._chats_open)
        try:
            await self._guarded(self._chat(reply, body, send), receive)
        finally:
            with self._lock:
                self._chats_open -= 1

    async def _guarded(self, coro: Awaitable[None], receive: Receive) -> None:
        """Run the reply, cancelling it when the client disconnects or the server stops."""

        async def wait_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        task = asyncio.ensure_future(coro)
        watcher = asyncio.ensure_future(wait_disconnect())
        self._inflight.add(task)
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._inflight.discard(task)
            for t in (task, watcher):
                t.cancel()
            for t in (task, watcher):
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not self.instant:
            await asyncio.sleep(seconds)

    # ---- responses ------------------------------------------------------------------------------

    @staticmethod
    async def _send_json(
        send: Send, status: int, obj: Any, extra_headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        data = _dumps(obj)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            *extra_headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    def _model_obj(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake"}

    def _models_payload(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._model_obj(m) for m in self.models]}

    async def _embeddings(self, body: dict[str, Any], send: Send) -> None:
        with self._lock:
            if self.record:
                self._embedding_requests.append(body)
            error = self._embedding_errors.popleft() if self._embedding_errors else None
        if error is not None:
            await self._send_json(send, error.status, error.payload())
            return
        raw = body.get("input")
        texts: list[str]
        if isinstance(raw, str):
            texts = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            texts = [json.dumps(raw)]
        elif isinstance(raw, list) and raw:
            texts = [x if isinstance(x, str) else json.dumps(x) for x in raw]
        else:
            await self._send_json(
                send, 400, Error(400, "'input' must be a non-empty string or list").payload()
            )
            return
        dims = body.get("dimensions")
        if isinstance(dims, int) and dims > MAX_EMBEDDING_DIM:
            # As OpenAI's models refuse a size past their own, at once.
            message = f"'dimensions' must be at most {MAX_EMBEDDING_DIM}."
            await self._send_json(send, 400, Error(400, message).payload())
            return
        dim = dims if isinstance(dims, int) and dims > 0 else EMBEDDING_DIM
        as_base64 = body.get("encoding_format") == "base64"
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dim)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii") if as_base64 else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(max(1, len(t.split())) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model") or self.models[0],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await self._send_json(send, 200, payload)

    async def _chat(self, reply: Reply, body: dict[str, Any], send: Send) -> None:
        reply = self._resolve(reply, body)
        stream = bool(body.get("stream"))
        stream_options = body.get("stream_options")
        include_usage = (
            stream and isinstance(stream_options, Mapping) and bool(stream_options.get("include_usage"))
        )
        model = str(body.get("model") or self.models[0])
        responder = _Responder(model=model, include_usage=include_usage)

        if isinstance(reply, Hang):
            await asyncio.sleep(reply.seconds)
            if reply.then is not None:
                await self._chat(reply.then, body, send)
            else:
                content_type = _SSE_HEADERS if stream else [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 200, "headers": content_type})
                # Returning without finishing the body makes uvicorn close the connection.
            return

        if isinstance(reply, Error):
            await self._sleep(reply.delay_s)
            extra = []
            if reply.retry_after is not None:
                extra.append((b"retry-after", _format_retry_after(reply.retry_after).encode()))
            await self._send_json(send, reply.status, reply.payload(), extra)
            return

        if isinstance(reply, Drop):
            await self._sleep(reply.delay_s)
            if stream:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                first = responder.chunk({"role": "assistant", "content": ""})
                content_chunk = responder.chunk({"content": reply.text})
                await send(
                    {
                        "type": "http.response.body",
                        "body": _sse(first) + _sse(content_chunk),
                        "more_body": True,
                    }
                )
            else:
                data = _dumps(responder.completion(reply.text, [], "stop", 10, 1))
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})
            # Returning without finishing the body makes uvicorn close the connection abruptly.
            return

        if isinstance(reply, StreamError):
            await self._sleep(reply.delay_s)
            if not stream:
                await self._send_json(send, reply.status, reply.payload())
                return
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            events = [_sse(responder.chunk({"role": "assistant", "content": ""}))]
            if reply.text:
                events += [_sse(responder.chunk({"content": p})) for p in split_words(reply.text)]
            events.append(_sse(reply.payload()))
            await send({"type": "http.response.body", "body": b"".join(events), "more_body": False})
            return

        if isinstance(reply, Raw):
            if not stream:
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b"".join(reply.events), "more_body": False})
                return
            events = [_sse(responder.chunk({"role": "assistant", "content": ""}))]
            events += [_sse(responder.chunk({"content": p})) for p in split_words(reply.text) if p]
            events += reply.events
            if reply.done:
                events.append(_DONE)
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await send({"type": "http.response.body", "body": b"".join(events), "more_body": False})
            return

        if isinstance(reply, Stall):
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            events = [_sse(responder.chunk({"role": "assistant", "content": ""}))]
            events += [_sse(responder.chunk({"content": p})) for p in split_words(reply.text) if p]
            await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
            await asyncio.sleep(reply.seconds)
            if reply.rest is None:
                return  # returning unfinished makes uvicorn close the connection
            tail = [_sse(responder.chunk({"content": p})) for p in split_words(reply.rest) if p]
            tail.append(_sse(responder.chunk({}, "stop")))
            if include_usage:
                tail.append(_sse(responder.usage_chunk(10, len(split_words(reply.text + reply.rest)))))
            tail.append(_DONE)
            await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})
            return

        if isinstance(reply, Text):
            pieces = reply.pieces()
            completion_tokens = (
                reply.completion_tokens
                if reply.completion_tokens is not None
                else len(split_words(reply.text))
            )
            await self._sleep(reply.delay_s)
            if not stream:
                payload = responder.completion(
                    reply.text, [], reply.finish_reason, reply.prompt_tokens, completion_tokens
                )
                payload["usage"].update(_usage_details(reply.cached_tokens, reply.reasoning_tokens))
                await self._send_json(send, 200, payload)
                return
            groups: list[list[bytes]] = [[_sse(responder.chunk({"role": "assistant", "content": ""}))]]
            groups += [
                [_sse(_with_logprobs(responder.chunk({"content": p}), body, p, i))]
                for i, p in enumerate(pieces)
            ]
            tail = [_sse(responder.chunk({}, reply.finish_reason))]
            if include_usage:
                usage = responder.usage_chunk(reply.prompt_tokens, completion_tokens)
                usage["usage"].update(_usage_details(reply.cached_tokens, reply.reasoning_tokens))
                tail.append(_sse(usage))
            tail.append(_DONE)
            groups.append(tail)
            await self._stream(send, groups, reply.chunk_delay_s)
            return

        if isinstance(reply, ToolCalls):
            calls = reply.resolved()
            split_args = [split_even(args, reply.argument_pieces) for _, _, args in calls]
            text_pieces = split_words(reply.text) if reply.text else []
            completion_tokens = (
                reply.completion_tokens
                if reply.completion_tokens is not None
                else len(text_pieces) + sum(len(p) + 1 for p in split_args)
            )
            await self._sleep(reply.delay_s)
            if not stream:
                tool_calls = [
                    {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                    for cid, name, args in calls
                ]
                payload = responder.completion(
                    reply.text, tool_calls, reply.finish_reason, reply.prompt_tokens, completion_tokens
                )
                await self._send_json(send, 200, payload)
                return
            groups = [[_sse(responder.chunk({"role": "assistant", "content": None}))]]
            groups += [[_sse(responder.chunk({"content": p}))] for p in text_pieces]
            for index, ((cid, name, _), arg_pieces) in enumerate(zip(calls, split_args, strict=True)):
                head = {
                    "index": index,
                    "id": cid,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                groups.append([_sse(responder.chunk({"tool_calls": [head]}))])
                for piece in arg_pieces:
                    delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    groups.append([_sse(responder.chunk(delta))])
            tail = [_sse(responder.chunk({}, reply.finish_reason))]
            if include_usage:
                tail.append(_sse(responder.usage_chunk(reply.prompt_tokens, completion_tokens)))
            tail.append(_DONE)
            groups.append(tail)
            await self._stream(send, groups, reply.chunk_delay_s)
            return

        raise TypeError(f"not a fake upstream reply: {reply!r}")

    async def _stream(self, send: Send, groups: list[list[bytes]], chunk_delay_s: float) -> None:
        """Send an SSE response: one write per group, ``chunk_delay_s`` apart (one write if instant)."""
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        if self.instant:
            data = b"".join(b"".join(g) for g in groups)
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        last = len(groups) - 1
        for i, group in enumerate(groups):
            if i > 0:
                await self._sleep(chunk_delay_s)
            await send({"type": "http.response.body", "body": b"".join(group), "more_body": i < last})


@dataclass
class _Responder:
    """Builds ``chat.completion`` / ``chat.completion.chunk`` objects for one response."""

    model: str
    include_usage: bool
    id: str = field(default_factory=lambda: _new_id("chatcmpl-"))
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            obj["usage"] = None
        return obj

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        obj = self.chunk({})
        obj["choices"] = []
        obj["usage"] = _usage(prompt_tokens, completion_tokens)
        return obj

    def completion(
        self,
        text: str | None,
        tool_calls: list[dict[str, Any]],
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": _usage(prompt_tokens, completion_tokens),
        }


def fake_logprob(piece: str, position: int, rank: int = 0) -> dict[str, Any]:
    """The logprob the fake gives a streamed text piece (one piece, one token) at ``position``, or its
    ``rank``-th alternative (``rank`` 0 is the token itself)."""
    token = piece if rank == 0 else f"{piece.strip() or '_'}~{rank}"
    return {
        "token": token,
        "logprob": -0.5 * (position + 1) - rank,
        "bytes": list(token.encode("utf-8")),
    }


def _with_logprobs(
    chunk: dict[str, Any], body: Mapping[str, Any], piece: str, position: int
) -> dict[str, Any]:
    """A content chunk with its token's logprob, as OpenAI sends it, when the request asked for logprobs
    (``logprobs: true``, ``top_logprobs`` alternatives each)."""
    if not body.get("logprobs"):
        return chunk
    top = body.get("top_logprobs") or 0
    token = {
        **fake_logprob(piece, position),
        "top_logprobs": [fake_logprob(piece, position, rank) for rank in range(top)],
    }
    chunk["choices"][0]["logprobs"] = {"content": [token], "refusal": None}
    return chunk


def _usage_details(cached_tokens: int | None, reasoning_tokens: int | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if cached_tokens is not None:
        details["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    if reasoning_tokens is not None:
        details["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return details


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# --------------------------------------------------------------------------------------------------
# Command line: a standalone upstream for benchmarks
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the scripted fake OpenAI upstream forever.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--instant", action="store_true", help="no delays; each stream in one write")
    parser.add_argument("--model", action="append", dest="models", help="model id to list (repeatable)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the default reply text")
    parser.add_argument("--echo", action="store_true", help="reply 'echo: <last user message>'")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before the first byte")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    default: Reply
    if args.echo:
        default = Echo(delay_s=args.delay, chunk_delay_s=args.chunk_delay)
    else:
        default = Text(args.text, delay_s=args.delay, chunk_delay_s=args.chunk_delay)
    fake = FakeUpstream(
        args.models, default=default, instant=args.instant, host=args.host, port=args.port, record=False
    )

    def announce() -> None:
        while fake._server is None or not fake._server.started:
            time.sleep(0.01)
        print(f"fake upstream listening on {fake.base_url}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        fake.serve_forever()


if __name__ == "__main__":
    main()
