"""Bounds on request bodies: how large one may be, and how long its bytes may take to arrive.

Checked as the bytes arrive, before any endpoint parses them: a declared ``Content-Length`` over the bound
is refused before a byte of the body is read, and a chunked body that runs past it is cut there, so no
body is ever held in memory whole past its bound. A body that trickles in (slow loris) is cut at its
deadline. Either way the client is answered in OpenAI's error body (413, an upload's 400, or 408) on a
connection that then closes: what is left of the body is never read. The endpoint, which saw the body end
early, answers nothing more; no database session is open while a body arrives (endpoints read it first).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AssistdError
from .errors import error_response
from .multipart import MAX_FIELD_BYTES, MAX_PARTS

# The upload form around the file: its other values and every part's headers and boundary.
_FORM_ALLOWANCE = MAX_PARTS * (MAX_FIELD_BYTES + 1024)
_UPLOAD_PATH = "/v1/files"


class _BodyRefused(AssistdError):
    """The answer the middleware gives itself: no endpoint raises it."""

    type = "invalid_request_error"

    def __init__(self, message: str, status: int, code: str, param: str | None = None) -> None:
        # The rest of the body is never read, so the connection cannot carry another request.
        super().__init__(message, param=param, code=code, headers={"connection": "close"})
        self.status_code = status


class BodyLimits:
    """ASGI middleware: ``max_json_bytes`` bounds every body but an upload's (POST /v1/files), which may
    be ``max_upload_bytes`` of file plus its form; each body must arrive within ``timeout_seconds``, plus
    a second for every ``min_bytes_per_second`` it has sent (so a large upload on a slow link still may)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_json_bytes: int,
        max_upload_bytes: int,
        timeout_seconds: float,
        min_bytes_per_second: int,
    ) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds
        self.min_bytes_per_second = min_bytes_per_second
        # A JSON body has no one parameter to name.
        self.json_bound = (
            max_json_bytes,
            _BodyRefused(
                f"The request body is too large: it may be at most {max_json_bytes} bytes.",
                413,
                "request_too_large",
            ),
        )
        # An upload past its bound is refused as the upload endpoint refuses a file too large (its body
        # may run a little past the file's bound, by the form around the file, before it is cut).
        self.upload_bound = (
            max_upload_bytes + _FORM_ALLOWANCE,
            _BodyRefused(
                f"Invalid 'file': files may be at most {max_upload_bytes} bytes.",
                400,
                "file_too_large",
                "file",
            ),
        )

    def bound_of(self, scope: Scope) -> tuple[int, _BodyRefused]:
        """The most bytes this request's body may have, and the answer to one that has more."""
        if scope["method"] == "POST" and scope["path"].rstrip("/") == _UPLOAD_PATH:
            return self.upload_bound
        return self.json_bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, too_large = self.bound_of(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(too_large)(scope, receive, send)
            return
        await _Guarded(self, scope, receive, send, limit, too_large).run()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed one before we see it
    return None


class _Guarded:
    """One request, its body counted and timed as the endpoint reads it."""

    def __init__(
        self,
        limits: BodyLimits,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        too_large: _BodyRefused,
    ) -> None:
        self.limits, self.scope, self._receive, self._send = limits, scope, receive, send
        self.limit, self.too_large = limit, too_large
        self.started = time.monotonic()
        self.received = 0
        self.ended = False
        self.responded = False  # by the endpoint or by us: a second start would be a protocol error
        self.refused = False

    async def run(self) -> None:
        await self.limits.app(self.scope, self.receive, self.send)

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # we already answered; the endpoint's answer to a body cut short goes nowhere
        if message["type"] == "http.response.start":
            self.responded = True
        await self._send(message)

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.ended:
            return await self._receive()  # past the body: only a disconnect is left to wait for
        deadline = (
            self.started + self.limits.timeout_seconds + self.received / self.limits.min_bytes_per_second
        )
        try:
            # A timeout around the await, not ``wait_for``: that runs the receive as a task of its own, a
            # task and a turn of the event loop on every request for a body that is usually there.
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                message = await self._receive()
        except TimeoutError:
            return await self.refuse(
                _BodyRefused(
                    "The request body did not arrive in time: "
                    f"{self.received} bytes came in {time.monotonic() - self.started:.1f} s.",
                    408,
                    "request_timeout",
                )
            )
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                return await self.refuse(self.too_large)
            self.ended = not message.get("more_body", False)
        return message

    async def refuse(self, error: _BodyRefused) -> Message:
        """Answer ``error`` (unless the endpoint has begun its own answer) and tell the endpoint the client
        has gone: the connection closes after the answer, so the rest of the body is never read."""
        if not self.responded:
            self.responded = True
            await error_response(error)(self.scope, self._receive, self._send)
        self.refused = True
        return {"type": "http.disconnect"}
