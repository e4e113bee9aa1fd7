"""The one place run events become Server-Sent Events frames, ending with ``done`` / ``[DONE]``."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..engine.events import StreamEvent

log = logging.getLogger(__name__)


def frame(event: StreamEvent) -> bytes:
    data = event.data.model_dump_json() if isinstance(event.data, BaseModel) else json.dumps(event.data)
    # The event's seq as its SSE id: a client that reconnects sends it back (Last-Event-ID) to resume
    # after it, from any replica (GET .../runs/{run_id}/events).
    ident = f"id: {event.seq}\n" if event.seq is not None else ""
    return f"{ident}event: {event.event}\ndata: {data}\n\n".encode()


DONE = b"event: done\ndata: [DONE]\n\n"


async def _frames(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield frame(event)
    except Exception:
        # After the first byte the status line is sent: report the failure in-band and end cleanly.
        log.exception("run stream failed")
        error = {
            "message": "The server had an error while streaming the run.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
    yield DONE


def event_stream(events: AsyncIterator[StreamEvent]) -> StreamingResponse:
    return StreamingResponse(
        _frames(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
