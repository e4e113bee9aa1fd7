"""A response's stream: its run's engine events (``thread.run.*``, ``thread.message.*``) as the Responses
API's events (``response.*``), numbered by ``sequence_number`` from 0.

The order is OpenAI's: ``response.created``, ``response.in_progress``; for each message the run writes,
``response.output_item.added``, ``response.content_part.added``, one ``response.output_text.delta`` per
text delta of the run, ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done`` (with ``response.output_text.annotation.added`` after the delta that adds a
citation); the built-in tool calls (``api/response_tool_stream.py``) where the run makes them, before the
message that follows; then ``response.completed``, ``response.incomplete`` or ``response.failed``
(a cancelled run's too: the Responses stream has no event of its own for it; the response says
``cancelled``). A failure of the server meanwhile is an ``error`` event, and the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..engine.events import StreamEvent
from ..engine.response_functions import Segment
from ..engine.response_replay import ReplayTurn
from ..engine.responses import Responses, ResponseTurn, response_of
from ..engine.turns import text_pieces
from ..errors import AssistdError
from ..protocol.items import message_to_item, tool_item_id
from ..protocol.messages import Message
from ..protocol.responses import Response, echoed_container, event_logprobs, output_item, with_logprobs
from ..protocol.runs import Run
from .response_tool_stream import ToolCallStream

log = logging.getLogger(__name__)

# The run's last event, and the response event that says the same.
_ENDINGS = {
    "thread.run.completed": "response.completed",
    "thread.run.incomplete": "response.incomplete",
    "thread.run.failed": "response.failed",
    "thread.run.cancelled": "response.failed",
    "thread.run.expired": "response.failed",
    # The run waits for function outputs: the response ends with its calls, as OpenAI's does.
    "thread.run.requires_action": "response.completed",
}


class _Stream:
    """The state of one response stream: the next sequence number, the output items opened so far."""

    def __init__(self) -> None:
        self.sequence = 0
        # Message id → (output index, text so far).
        self.items: dict[str, tuple[int, list[str]]] = {}
        # The function calls the run is writing (``_FunctionCalls``).
        self.functions = _FunctionCalls(self)
        self._drafts: dict[str, Message] = {}
        # Output indexes are shared by all the response's items, messages and tool calls alike.
        self.outputs = 0
        # Message id → its token logprobs so far, as the model gave them (a run that asked for them).
        self.logprobs: dict[str, list[dict[str, Any]]] = {}

    def next_output(self) -> int:
        """The output index of the item opened now."""
        index = self.outputs
        self.outputs += 1
        return index

    def output_index(self, message_id: str) -> int | None:
        found = self.items.get(message_id)
        return found[0] if found is not None else None

    def event(self, kind: str, body: dict[str, Any]) -> StreamEvent:
        data = {"type": kind, "sequence_number": self.sequence, **body}
        self.sequence += 1
        return StreamEvent(kind, data)

    def opened(self, message: Message) -> list[StreamEvent]:
        index = self.next_output()
        self.items[message.id] = (index, [])
        self._drafts[message.id] = message
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
        # Closed once: a message may have been closed early, as a function call began (``close_messages``).
        found = self.items.pop(message.id, None)
        if found is None:
            return []
        index = found[0]
        item = with_logprobs(output_item(message_to_item(message)), self.logprobs.get(message.id))
        texts = [part for part in item["content"] if part.get("type") == "output_text"]
        text = "".join(found[1])
        part = texts[0] if texts else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return self._done(message.id, index, item, part)

    def close_messages(self) -> list[StreamEvent]:
        """Close the messages still open with the text they have: the model has moved on to calling
        functions, and OpenAI's stream closes a message before the next item begins. Their whole text is
        what was streamed (the model writes no more of them)."""
        events = []
        for message_id, (index, text) in list(self.items.items()):
            del self.items[message_id]
            part = {"type": "output_text", "text": "".join(text), "annotations": [], "logprobs": []}
            draft = {**output_item(message_to_item(self._drafts[message_id])), "status": "completed"}
            item = with_logprobs({**draft, "content": [part]}, self.logprobs.get(message_id))
            part = item["content"][0]
            events += self._done(message_id, index, item, part)
        return events

    def _done(
        self, message_id: str, index: int, item: dict[str, Any], part: dict[str, Any]
    ) -> list[StreamEvent]:
        where = {"item_id": message_id, "output_index": index, "content_index": 0}
        tokens = self.logprobs.get(message_id, [])
        return [
            self.event(
                "response.output_text.done",
                {**where, "text": part["text"], "logprobs": event_logprobs(tokens)},
            ),
            self.event("response.content_part.done", {**where, "part": part}),
            self.event("response.output_item.done", {"output_index": index, "item": item}),
        ]


@dataclass
class _Call:
    """A function call's item as the stream shows it: opened once its id and name are known."""

    item_id: str
    output_index: int | None = None
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    closed: bool = False


class _FunctionCalls:
    """The run's function calls as ``function_call`` items: ``response.output_item.added`` (arguments
    empty), ``response.function_call_arguments.delta`` per piece the model writes, then
    ``response.function_call_arguments.done`` and ``response.output_item.done`` once the next call begins
    or the run waits for their outputs (its ``required_action`` names the calls whole)."""

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream
        # (step id, index of the call in the step) → the call; in the order the calls were first seen.
        self.calls: dict[tuple[str, int], _Call] = {}

    def delta(self, data: BaseModel | dict[str, Any]) -> list[StreamEvent]:
        """What a ``thread.run.step.delta`` adds to the function calls (other tools' calls are not these)."""
        body = data.model_dump() if isinstance(data, BaseModel) else data
        details = body.get("delta", {}).get("step_details") or {}
        events: list[StreamEvent] = []
        for piece in details.get("tool_calls") or []:
            if piece.get("type") != "function":
                continue
            step_id, index = str(body.get("id")), int(piece.get("index", 0))
            call = self.calls.get((step_id, index))
            if call is None:
                call = self.calls[(step_id, index)] = _Call(tool_item_id("function_call", step_id, index))
            function = piece.get("function") or {}
            call.call_id = call.call_id or str(piece.get("id") or "")
            call.name += str(function.get("name") or "")
            arguments = str(function.get("arguments") or "")
            if call.output_index is None:
                call.arguments.append(arguments)
                if call.call_id and call.name:
                    events += self._opened(call)
            elif arguments:
                call.arguments.append(arguments)
                events.append(self._argument_delta(call, arguments))
        return events

    def done(self, data: BaseModel | dict[str, Any]) -> list[StreamEvent]:
        """The calls closed as the waiting run names them (``required_action``): its arguments are whole."""
        body = data.model_dump() if isinstance(data, BaseModel) else data
        action = body.get("required_action") or {}
        required = (action.get("submit_tool_outputs") or {}).get("tool_calls") or []
        by_call_id = {call.call_id: call for call in self.calls.values()}
        events: list[StreamEvent] = []
        for asked in required:
            call = by_call_id.get(asked["id"])
            if call is None:
                # Not seen being written (no delta reached this stream): shown whole at once.
                call = _Call(f"fc_{asked['id']}", call_id=asked["id"], name=asked["function"]["name"])
                self.calls[(call.item_id, 0)] = call
            if call.output_index is None:
                call.name = asked["function"]["name"]
                call.arguments = [asked["function"]["arguments"]]
                events += self._opened(call)
            if not call.closed:
                events += self._closed(call, asked["function"]["arguments"])
        return events

    def _closed(self, call: _Call, arguments: str) -> list[StreamEvent]:
        call.closed = True
        where = {"item_id": call.item_id, "output_index": call.output_index}
        item = self._item(call, arguments, "completed")
        return [
            self._stream.event(
                "response.function_call_arguments.done", {**where, "name": call.name, "arguments": arguments}
            ),
            self._stream.event(
                "response.output_item.done", {"output_index": call.output_index, "item": item}
            ),
        ]

    def _opened(self, call: _Call) -> list[StreamEvent]:
        # As OpenAI's, one call is done before the next begins: the model writes them one after the other,
        # so the calls opened before this one are whole.
        events = self._stream.close_messages()
        for earlier in self.calls.values():
            if earlier is not call and earlier.output_index is not None and not earlier.closed:
                events += self._closed(earlier, "".join(earlier.arguments))
        call.output_index = self._stream.next_output()
        item = self._item(call, "", "in_progress")
        events.append(
            self._stream.event(
                "response.output_item.added", {"output_index": call.output_index, "item": item}
            )
        )
        # OpenAI sends at least one delta; what was written before the call could be shown goes in it.
        events.append(self._argument_delta(call, "".join(call.arguments)))
        return events

    def _argument_delta(self, call: _Call, piece: str) -> StreamEvent:
        return self._stream.event(
            "response.function_call_arguments.delta",
            {"item_id": call.item_id, "output_index": call.output_index, "delta": piece},
        )

    @staticmethod
    def _item(call: _Call, arguments: str, status: str) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": call.item_id,
            "call_id": call.call_id,
            "name": call.name,
            "arguments": arguments,
            "status": status,
        }


def _field(data: BaseModel | dict[str, Any], name: str) -> Any:
    return getattr(data, name, None) if isinstance(data, BaseModel) else data.get(name)


def _message(data: BaseModel | dict[str, Any]) -> Message:
    # As the executor made it in this process, or read back from the database's event log.
    return data if isinstance(data, Message) else Message.model_validate(data)


# The segment of a response whose run has written nothing yet.
_NOTHING_YET = Segment([], waited=False)


def _as_queued(created: ResponseTurn) -> Response:
    """The response as its run was queued: what ``response.created`` shows, without a read (the run is the one
    the create returned, and it has written nothing yet)."""
    return response_of(created.row, created.turn.run, _NOTHING_YET, [])


def _status_only(run: Run, status: str) -> bool:
    """``run`` is in ``status`` with no error, usage or incomplete details: a response shows its status
    alone of it."""
    return (
        run.status == status
        and run.last_error is None
        and run.usage is None
        and run.incomplete_details is None
    )


async def _as_started(
    responses: Responses,
    created: ResponseTurn,
    stream: _Stream,
    data: BaseModel | dict[str, Any],
    queued: dict[str, Any],
) -> dict[str, Any]:
    """The response as ``thread.run.in_progress`` leaves it, as JSON. Before the run has written a message
    (its first start: every time but after tool outputs) that is the event's run with no output, and needs
    no read; after, the messages are read with it."""
    if stream.outputs:
        return (await responses.read(created.row)).model_dump(mode="json")
    run = data if isinstance(data, Run) else Run.model_validate(data)
    if _status_only(created.turn.run, "queued") and _status_only(run, "in_progress"):
        # All ``response_of`` takes from either run is its status: the ``response.created`` one
        # (``queued``), in progress, without building and serialising the whole response again.
        return {**queued, "status": "in_progress"}
    return response_of(created.row, run, _NOTHING_YET, []).model_dump(mode="json")


async def response_events(responses: Responses, created: ResponseTurn) -> AsyncIterator[StreamEvent]:
    """The response's stream, from ``response.created`` to its last event."""
    stream = _Stream()
    turn = created.turn
    tools = ToolCallStream(
        stream,
        lambda step_id: responses.tool_items(created.row, step_id),
        echoed_container(created.row.request.get("tools") or [], created.row.thread_id),
    )
    try:
        # The run's task was scheduled as the create committed: let it take its first turn to the model
        # first (the context read, the upstream request) while this builds ``response.created``, which
        # the client waits for no less than for the first delta (~0.4 ms sooner to the model).
        await asyncio.sleep(0)
        first = _as_queued(created).model_dump(mode="json")
        yield stream.event("response.created", {"response": first})
        ended = False
        async for event in turn.events():
            name = event.event
            if name == "thread.run.in_progress":
                started = await _as_started(responses, created, stream, event.data, first)
                yield stream.event("response.in_progress", {"response": started})
            elif name == "thread.message.created":
                for out in stream.opened(_message(event.data)):
                    yield out
            elif name == "thread.message.delta":
                for out in stream.delta(event.data):
                    yield out
                message_id = str(_field(event.data, "id"))
                for out in tools.annotations(event.data, stream.output_index(message_id)):
                    yield out
            elif name == "thread.run.step.delta":
                # A step's delta carries the calls of one kind or another: each stream takes its own.
                for out in stream.functions.delta(event.data):
                    yield out
                for out in await tools.step_delta(event.data):
                    yield out
            elif name in ("thread.message.completed", "thread.message.incomplete"):
                for out in stream.closed(_message(event.data)):
                    yield out
            elif name in _ENDINGS:
                if name == "thread.run.requires_action":
                    for out in stream.functions.done(event.data):
                        yield out
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


# Resumed streams (background responses) ----------------------------------------------------------

# The events whose response the original stream showed before the run wrote anything.
_OPENING = {"response.created": "queued", "response.in_progress": "in_progress"}
_LAST = {*_ENDINGS.values(), "error"}


def _as_it_was(kind: str, response: dict[str, Any]) -> dict[str, Any]:
    """An opening event's response as the original stream showed it: replayed, the response is read as it
    stands now (perhaps completed), and the stream's own events say what came after."""
    shown = {**response, "status": _OPENING[kind], "output": [], "completed_at": None, "error": None}
    shown.pop("usage", None)
    return {**shown, "incomplete_details": None}


async def resumed_response_events(
    responses: Responses, replayed: ResponseTurn, after: int | None
) -> AsyncIterator[StreamEvent]:
    """A background response's stream again (``engine/response_replay.py``), from the event after
    ``sequence_number`` ``after`` (None: from the first), live until the response ends.

    The run's log replayed from its start gives every event the number the original stream gave it. A log
    that no longer holds the start (pruned, or lost with a process's memory) cannot number the events as
    the original did: the stream is then ``response.created`` (without ``after``) and the response's last
    event, numbered on from ``after``.
    """
    turn = replayed.turn
    assert isinstance(turn, ReplayTurn)
    # The next number this stream gives: the client's numbers go on from ``after``, whatever happens.
    number = 0 if after is None else after + 1
    async for event in response_events(responses, replayed):
        data = event.data
        assert isinstance(data, dict)
        if turn.whole is False:
            # ``response.created`` (made before the log's first event was read) is the only one let by.
            if event.event in _LAST:
                yield StreamEvent(event.event, {**data, "sequence_number": number})
            continue
        if data["sequence_number"] < number:
            continue
        if event.event in _OPENING:
            data = {**data, "response": _as_it_was(event.event, data["response"])}
        number = data["sequence_number"] + 1
        yield StreamEvent(event.event, data)
