"""The one place events become Server-Sent Events frames.

Two shapes: run streams (``/v1``) send ``event: NAME`` frames as OpenAI names them and end with ``done`` /
``[DONE]``; the facades (``/ask``) send plain ``data: {...}`` frames, which a browser's EventSource or any
SSE reader takes, and end with their last object. Either reports a failure after the first byte in-band
and ends cleanly: the status line is sent by then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..engine.events import StreamEvent
from ..errors import AssistdError
from ..metrics import tracked_stream

log = logging.getLogger(__name__)

DONE = b"event: done\ndata: [DONE]\n\n"
# Chat Completions streams end with a bare data line, no event name.
DATA_DONE = b"data: [DONE]\n\n"
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_SERVER_ERROR = {"type": "server_error", "param": None, "code": None}


# Compact, and UTF-8 as it is: a chunk per token, each encoded once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _encode(data: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(data).encode()


def _json(data: BaseModel | dict[str, Any]) -> str:
    return data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)


def frame(event: StreamEvent) -> bytes:
    # The event's seq as its SSE id: a client that reconnects sends it back (Last-Event-ID) to resume
    # after it, from any replica (GET .../runs/{run_id}/events).
    ident = f"id: {event.seq}\n" if event.seq is not None else ""
    return f"{ident}event: {event.event}\ndata: {_json(event.data)}\n\n".encode()


def data_frame(data: BaseModel | dict[str, Any]) -> bytes:
    """A frame of data alone: ``data: {...}``."""
    return f"data: {_json(data)}\n\n".encode()


async def _frames(events: AsyncIterator[StreamEvent], done: bool = True) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield frame(event)
    except Exception:
        log.exception("run stream failed")
        error = {"message": "The server had an error while streaming the run.", **_SERVER_ERROR}
        yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
    if done:
        yield DONE


async def _data_frames(items: AsyncIterator[BaseModel]) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield data_frame(item)
    except AssistdError as exc:
        yield data_frame(exc.body())
    except Exception:
        log.exception("stream failed")
        yield data_frame({"error": {"message": "The server had an error while streaming.", **_SERVER_ERROR}})


def event_stream(events: AsyncIterator[StreamEvent]) -> StreamingResponse:
    """A run's events as ``event:`` frames, then ``done``."""
    return StreamingResponse(
        tracked_stream(_frames(events)), media_type="text/event-stream", headers=_HEADERS
    )


def response_stream(events: AsyncIterator[StreamEvent]) -> StreamingResponse:
    """A response's events (``response.*``) as ``event:`` frames. The Responses API ends its streams with
    their last event, no ``done``: the events report their own failures (``api.response_stream``)."""
    return StreamingResponse(
        tracked_stream(_frames(events, done=False)), media_type="text/event-stream", headers=_HEADERS
    )


def data_stream(items: AsyncIterator[BaseModel]) -> StreamingResponse:
    """Objects as ``data:`` frames; an error raised meanwhile becomes the last frame, ``{"error": {...}}``."""
    return StreamingResponse(
        tracked_stream(_data_frames(items)), media_type="text/event-stream", headers=_HEADERS
    )


async def _chat_frames(chunks: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[bytes]:
    # The first frame (the role chunk) waits for the second, sent with it in one write: the second is at
    # hand as soon as the first is (the provider's first chunk is awaited before the response starts), and
    # each write is a segment the client wakes for, a system call or two on each side for nothing.
    held = b""
    first = True
    try:
        async for chunk in chunks:
            frame = b"data: " + _encode(chunk) + b"\n\n"
            if first:
                held, first = frame, False
                continue
            yield held + frame
            held = b""
    except AssistdError as exc:
        # As OpenAI reports a failure mid-stream: an error object where a chunk was due, and no [DONE].
        yield held + data_frame(exc.body())
        return
    except Exception:
        log.exception("chat completion stream failed")
        error = {"error": {"message": "The server had an error while streaming.", **_SERVER_ERROR}}
        yield held + data_frame(error)
        return
    yield held + DATA_DONE


def chat_stream(chunks: AsyncIterator[Mapping[str, Any]]) -> StreamingResponse:
    """Chat completion chunks as ``data:`` frames, then ``data: [DONE]``."""
    return StreamingResponse(
        tracked_stream(_chat_frames(chunks)), media_type="text/event-stream", headers=_HEADERS
    )
