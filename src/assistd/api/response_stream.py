"""A response's stream: its run's engine events (``thread.run.*``, ``thread.message.*``) as the Responses
API's events (``response.*``), numbered by ``sequence_number`` from 0.

The order is OpenAI's: ``response.created``, ``response.in_progress``; for each message the run writes,
``response.output_item.added``, ``response.content_part.added``, one ``response.output_text.delta`` per
text delta of the run, ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``; then ``response.completed``, ``response.incomplete`` or ``response.failed``
(a cancelled run's too: the Responses stream has no event of its own for it; the response says
``cancelled``). A failure of the server meanwhile is an ``error`` event, and the stream ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from ..engine.events import StreamEvent
from ..engine.responses import Responses, ResponseTurn, response_of
from ..engine.turns import text_pieces
from ..errors import AssistdError
from ..protocol.items import message_to_item
from ..protocol.messages import Message
from ..protocol.responses import Response, event_logprobs, output_item, with_logprobs
from ..protocol.runs import Run

log = logging.getLogger(__name__)

# The run's last event, and the response event that says the same.
_ENDINGS = {
    "thread.run.completed": "response.completed",
    "thread.run.incomplete": "response.incomplete",
    "thread.run.failed": "response.failed",
    "thread.run.cancelled": "response.failed",
    "thread.run.expired": "response.failed",
}


class _Stream:
    """The state of one response stream: the next sequence number, the output items opened so far."""

    def __init__(self) -> None:
        self.sequence = 0
        # Message id → (output index, text so far).
        self.items: dict[str, tuple[int, list[str]]] = {}
        # Message id → its token logprobs so far, as the model gave them (a run that asked for them).
        self.logprobs: dict[str, list[dict[str, Any]]] = {}

    def event(self, kind: str, body: dict[str, Any]) -> StreamEvent:
        data = {"type": kind, "sequence_number": self.sequence, **body}
        self.sequence += 1
        return StreamEvent(kind, data)

    def opened(self, message: Message) -> list[StreamEvent]:
        index = len(self.items)
        self.items[message.id] = (index, [])
        item = {**message_to_item(message), "content": []}
        return [
            self.event("response.output_item.added", {"output_index": index, "item": item}),
            self.event(
                "response.content_part.added",
                {
                    "item_id": message.id,
                    "output_index": index,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                },
            ),
        ]

    def delta(self, data: BaseModel | dict[str, Any]) -> list[StreamEvent]:
        body = data.model_dump() if isinstance(data, BaseModel) else data
        found = self.items.get(str(body.get("id")))
        if found is None:
            return []
        index, text = found
        events = []
        tokens = self._delta_logprobs(str(body["id"]), body)
        for piece in text_pieces(body):
            text.append(piece)
            events.append(
                self.event(
                    "response.output_text.delta",
                    {
                        "item_id": body["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": piece,
                        # A delta's tokens go with its first piece (a delta has one text part).
                        "logprobs": event_logprobs(tokens),
                    },
                )
            )
            tokens = []
        return events

    def _delta_logprobs(self, message_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The token logprobs a ``thread.message.delta`` carries (its run asked for them), kept for the
        message's ``done`` events too."""
        tokens = [
            token
            for part in body.get("delta", {}).get("content", [])
            if part.get("type") == "text"
            for token in part.get("text", {}).get("logprobs") or []
        ]
        if tokens:
            self.logprobs.setdefault(message_id, []).extend(tokens)
        return tokens

    def closed(self, message: Message) -> list[StreamEvent]:
        found = self.items.get(message.id)
        if found is None:
            return []
        index = found[0]
        tokens = self.logprobs.get(message.id, [])
        item = with_logprobs(output_item(message_to_item(message)), tokens)
        texts = [part for part in item["content"] if part.get("type") == "output_text"]
        text = "".join(found[1])
        part = texts[0] if texts else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        where = {"item_id": message.id, "output_index": index, "content_index": 0}
        return [
            self.event(
                "response.output_text.done",
                {**where, "text": part["text"], "logprobs": event_logprobs(tokens)},
            ),
            self.event("response.content_part.done", {**where, "part": part}),
            self.event("response.output_item.done", {"output_index": index, "item": item}),
        ]


def _message(data: BaseModel | dict[str, Any]) -> Message:
    # As the executor made it in this process, or read back from the database's event log.
    return data if isinstance(data, Message) else Message.model_validate(data)


def _as_queued(created: ResponseTurn) -> Response:
    """The response as its run was queued: what ``response.created`` shows, without a read (the run is the one
    the create returned, and it has written nothing yet)."""
    return response_of(created.row, created.turn.run, [])


async def _as_started(
    responses: Responses, created: ResponseTurn, stream: _Stream, data: BaseModel | dict[str, Any]
) -> Response:
    """The response as ``thread.run.in_progress`` leaves it. Before the run has written a message (its first
    start: every time but after tool outputs) that is the event's run with no output, and needs no read;
    after, the messages are read with it."""
    if stream.items:
        return await responses.read(created.row)
    run = data if isinstance(data, Run) else Run.model_validate(data)
    return response_of(created.row, run, [])


async def response_events(responses: Responses, created: ResponseTurn) -> AsyncIterator[StreamEvent]:
    """The response's stream, from ``response.created`` to its last event."""
    stream = _Stream()
    turn = created.turn
    try:
        first = _as_queued(created)
        yield stream.event("response.created", {"response": first.model_dump(mode="json")})
        ended = False
        async for event in turn.events():
            name = event.event
            if name == "thread.run.in_progress":
                response = await _as_started(responses, created, stream, event.data)
                yield stream.event("response.in_progress", {"response": response.model_dump(mode="json")})
            elif name == "thread.message.created":
                for out in stream.opened(_message(event.data)):
                    yield out
            elif name == "thread.message.delta":
                for out in stream.delta(event.data):
                    yield out
            elif name in ("thread.message.completed", "thread.message.incomplete"):
                for out in stream.closed(_message(event.data)):
                    yield out
            elif name in _ENDINGS:
                response = await responses.read(created.row)
                yield stream.event(_ENDINGS[name], {"response": response.model_dump(mode="json")})
                ended = True
        if not ended:
            yield stream.event(
                "error",
                {
                    "code": "timeout",
                    "message": "The response did not end while the stream was open; retrieve it later.",
                    "param": None,
                },
            )
    except AssistdError as exc:
        yield stream.event("error", {"code": exc.code, "message": exc.message, "param": exc.param})
    except Exception:
        log.exception("response stream failed")
        message = "The server had an error while streaming the response."
        yield stream.event("error", {"code": "server_error", "message": message, "param": None})
    finally:
        turn.close()
        # A stream its client left: the run goes on, and its thread stays (``forget`` keeps a running one).
        with contextlib.suppress(Exception):
            await responses.forget(created)
