"""The built-in tool calls of a response's stream: a run's ``thread.run.step.delta`` events for its
file_search and code_interpreter calls as the Responses API's events, and its citations as
``response.output_text.annotation.added``. ``api/response_stream.py`` numbers the events and owns the
output indexes, which messages and tool calls share.

A call is opened when the run first shows it (its id), and done when the run shows its results (the step
delta that carries them, written once the tool ran): then its item is read back as ``protocol/items.py``
maps it, with the create's ``include``. In OpenAI's order:

- file_search: ``response.output_item.added``, ``response.file_search_call.in_progress``, then, once it ran,
  ``.searching``, ``.completed``, ``response.output_item.done``;
- code_interpreter: ``response.output_item.added``, ``response.code_interpreter_call.in_progress``, one
  ``response.code_interpreter_call_code.delta`` per piece of code the model writes,
  ``response.code_interpreter_call_code.done``, ``.interpreting``, ``.completed``,
  ``response.output_item.done``.

MCP servers' listings and calls (``engine/response_mcp.py``), in OpenAI's order:

- a listing: ``response.output_item.added`` (no tools yet), ``response.mcp_list_tools.in_progress``, then
  ``.completed`` (or ``.failed``), ``response.output_item.done``;
- a call: ``response.output_item.added``, ``response.mcp_call.in_progress``, one
  ``response.mcp_call_arguments.delta`` per piece of arguments the model writes,
  ``response.mcp_call_arguments.done``, then once it ran ``response.mcp_call.completed`` (or ``.failed``),
  ``response.output_item.done``;
- a call waiting for approval: its ``mcp_approval_request`` item's ``response.output_item.added`` and
  ``.done``, once the model's turn has ended.

The search and the code run between the model's call and its results: ``searching`` and ``interpreting``
are told when they have run, not as they start (the run's events say nothing in between).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel

from ..engine.events import StreamEvent
from ..protocol.items import annotation_to_item, tool_item_id

# Run step call type → (item type, event prefix).
_KINDS = {
    "file_search": ("file_search_call", "response.file_search_call"),
    "code_interpreter": ("code_interpreter_call", "response.code_interpreter_call"),
}

# Run step MCP call type → item type.
_MCP_KINDS = {
    "mcp_list_tools": "mcp_list_tools",
    "mcp": "mcp_call",
    "mcp_approval_request": "mcp_approval_request",
}

ReadItems = Callable[[str], Awaitable[list[dict[str, Any]]]]


class Numbering(Protocol):
    """What of the response's stream this one uses: its numbering and its output indexes."""

    def event(self, kind: str, body: dict[str, Any]) -> StreamEvent: ...

    def next_output(self) -> int: ...


class ToolCallStream:
    def __init__(self, stream: Numbering, read_items: ReadItems, container_id: str) -> None:
        self._stream = stream
        self._read_items = read_items
        self._container_id = container_id
        # Item id → (output index, code so far); a call's item id names its step and place in it.
        self._open: dict[str, tuple[int, list[str]]] = {}
        self._done: set[str] = set()
        # Message id → annotations shown so far.
        self._annotations: dict[str, int] = {}

    async def step_delta(self, data: BaseModel | dict[str, Any]) -> list[StreamEvent]:
        """The events of a ``thread.run.step.delta``: built-in calls opened, code written, results come."""
        body = data.model_dump() if isinstance(data, BaseModel) else data
        step_id = str(body.get("id"))
        calls = ((body.get("delta") or {}).get("step_details") or {}).get("tool_calls") or []
        events: list[StreamEvent] = []
        finished: list[str] = []
        for call in calls:
            kind = call.get("type")
            if kind in _MCP_KINDS and call.get("index") is not None:
                item_id = tool_item_id(_MCP_KINDS[kind], step_id, int(call["index"]))
                details = call.get(kind) or {}
                if kind != "mcp_approval_request" and item_id not in self._open and item_id not in self._done:
                    events += self._mcp_opened(kind, item_id, details)
                if kind == "mcp" and details.get("arguments") and not details.get("done"):
                    events += self._arguments(item_id, str(details["arguments"]))
                if details.get("done"):
                    finished.append(item_id)
                continue
            if kind not in _KINDS or call.get("index") is None:
                continue
            item_id = tool_item_id(_KINDS[kind][0], step_id, int(call["index"]))
            details = call.get(kind) or {}
            if item_id not in self._open and item_id not in self._done:
                events += self._opened(kind, item_id)
            if kind == "code_interpreter" and details.get("input"):
                events += self._code(item_id, str(details["input"]))
            # The results delta: file_search's carries ``results``, code_interpreter's ``outputs`` alone.
            if "results" in details or (kind == "code_interpreter" and "input" not in details):
                finished.append(item_id)
        if finished:
            items = {item["id"]: item for item in await self._read_items(step_id)}
            for item_id in finished:
                if item_id in items:
                    events += self._closed(items[item_id])
        return events

    def annotations(self, data: BaseModel | dict[str, Any], output_index: int | None) -> list[StreamEvent]:
        """``response.output_text.annotation.added`` for each citation a ``thread.message.delta`` adds."""
        body = data.model_dump() if isinstance(data, BaseModel) else data
        if output_index is None:
            return []
        message_id = str(body.get("id"))
        events = []
        for part in (body.get("delta") or {}).get("content") or []:
            if part.get("type") != "text":
                continue
            for annotation in (part.get("text") or {}).get("annotations") or []:
                shown = annotation_to_item(annotation)
                if shown is None:
                    continue
                number = self._annotations.get(message_id, 0)
                self._annotations[message_id] = number + 1
                events.append(
                    self._stream.event(
                        "response.output_text.annotation.added",
                        {
                            "item_id": message_id,
                            "output_index": output_index,
                            "content_index": 0,
                            "annotation_index": number,
                            "annotation": shown,
                        },
                    )
                )
        return events

    def _opened(self, kind: str, item_id: str) -> list[StreamEvent]:
        index = self._stream.next_output()
        self._open[item_id] = (index, [])
        if kind == "file_search":
            item: dict[str, Any] = {
                "type": "file_search_call",
                "id": item_id,
                "queries": [],
                "status": "in_progress",
                "results": None,
            }
        else:
            item = {
                "type": "code_interpreter_call",
                "id": item_id,
                "code": "",
                "outputs": None,
                "status": "in_progress",
                "container_id": self._container_id,
            }
        where = {"item_id": item_id, "output_index": index}
        return [
            self._stream.event("response.output_item.added", {"output_index": index, "item": item}),
            self._stream.event(f"{_KINDS[kind][1]}.in_progress", where),
        ]

    def _mcp_opened(self, kind: str, item_id: str, details: dict[str, Any]) -> list[StreamEvent]:
        index = self._stream.next_output()
        self._open[item_id] = (index, [])
        label = str(details.get("server_label") or "")
        if kind == "mcp_list_tools":
            item: dict[str, Any] = {
                "type": "mcp_list_tools",
                "id": item_id,
                "server_label": label,
                "tools": [],
            }
            started = "response.mcp_list_tools.in_progress"
        else:
            item = {
                "type": "mcp_call",
                "id": item_id,
                "server_label": label,
                "name": str(details.get("name") or ""),
                "arguments": "",
                "status": "in_progress",
            }
            started = "response.mcp_call.in_progress"
        where = {"item_id": item_id, "output_index": index}
        return [
            self._stream.event("response.output_item.added", {"output_index": index, "item": item}),
            self._stream.event(started, where),
        ]

    def _arguments(self, item_id: str, piece: str) -> list[StreamEvent]:
        found = self._open.get(item_id)
        if found is None:
            return []
        found[1].append(piece)
        body = {"item_id": item_id, "output_index": found[0], "delta": piece}
        return [self._stream.event("response.mcp_call_arguments.delta", body)]

    def _mcp_closed(self, item: dict[str, Any]) -> list[StreamEvent]:
        if item["type"] == "mcp_approval_request":
            if item["id"] in self._done:
                return []
            self._done.add(item["id"])
            index = self._stream.next_output()
            return [
                self._stream.event("response.output_item.added", {"output_index": index, "item": item}),
                self._stream.event("response.output_item.done", {"output_index": index, "item": item}),
            ]
        found = self._open.pop(item["id"], None)
        if found is None:
            return []
        self._done.add(item["id"])
        where = {"item_id": item["id"], "output_index": found[0]}
        failed = item.get("error") is not None
        if item["type"] == "mcp_list_tools":
            events = [
                self._stream.event(f"response.mcp_list_tools.{'failed' if failed else 'completed'}", where)
            ]
        else:
            arguments = {**where, "arguments": item["arguments"]}
            events = [
                self._stream.event("response.mcp_call_arguments.done", arguments),
                self._stream.event(f"response.mcp_call.{'failed' if failed else 'completed'}", where),
            ]
        done = {"output_index": found[0], "item": item}
        return [*events, self._stream.event("response.output_item.done", done)]

    def _code(self, item_id: str, piece: str) -> list[StreamEvent]:
        found = self._open.get(item_id)
        if found is None:
            return []
        found[1].append(piece)
        body = {"item_id": item_id, "output_index": found[0], "delta": piece}
        return [self._stream.event("response.code_interpreter_call_code.delta", body)]

    def _closed(self, item: dict[str, Any]) -> list[StreamEvent]:
        if item["type"] in _MCP_KINDS.values():
            return self._mcp_closed(item)
        found = self._open.pop(item["id"], None)
        if found is None:
            return []
        self._done.add(item["id"])
        where = {"item_id": item["id"], "output_index": found[0]}
        if item["type"] == "file_search_call":
            events = [
                self._stream.event("response.file_search_call.searching", where),
                self._stream.event("response.file_search_call.completed", where),
            ]
        else:
            code = item.get("code") or "".join(found[1])
            events = [
                self._stream.event("response.code_interpreter_call_code.done", {**where, "code": code}),
                self._stream.event("response.code_interpreter_call.interpreting", where),
                self._stream.event("response.code_interpreter_call.completed", where),
            ]
        done = {"output_index": found[0], "item": item}
        return [*events, self._stream.event("response.output_item.done", done)]
