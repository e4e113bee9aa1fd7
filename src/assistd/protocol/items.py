"""Assistants objects as Responses/Conversations items, and input items as Assistants messages.

The one place that maps between the two APIs over the same store: a thread is a conversation, its messages
are ``message`` items and its runs' tool calls (run steps) are ``function_call``, ``function_call_output``,
``file_search_call`` and ``code_interpreter_call`` items. Items are plain dicts shaped as the ``openai``
SDK's ``openai.types.conversations.ConversationItem`` (tests validate them with it).

Item ids. A message item keeps its message's id (``msg_...``). A tool-call item's id names its run step
and the call's place in it, so that it can be found again from the id alone::

    {prefix}_{step id without "step_"}_{index of the call in step_details.tool_calls}

with prefix ``fc`` (function_call), ``fco`` (function_call_output), ``fs`` (file_search_call) and ``ci``
(code_interpreter_call); ``parse_item_id`` reads one back. Ids made by ``ids.new_id`` hold letters and
digits only, so the underscores split the id unambiguously.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from .common import ParamValueError, check_uri
from .messages import Message, MessageCreateParams
from .run_steps import RunStep

ItemStatus = Literal["in_progress", "completed", "incomplete"]

# The include[] values of the Conversations/Responses APIs that change what an item shows.
INCLUDE_FILE_SEARCH_RESULTS = "file_search_call.results"
INCLUDE_CODE_OUTPUTS = "code_interpreter_call.outputs"

_PREFIXES = {
    "function_call": "fc",
    "function_call_output": "fco",
    "file_search_call": "fs",
    "code_interpreter_call": "ci",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}
_KINDS = {prefix: kind for kind, prefix in _PREFIXES.items()}
_STEP_PREFIX = "step_"

# Where a code_interpreter image can be fetched: the Responses item has a url where Assistants has a file id.
FILE_CONTENT_URL = "/v1/files/{file_id}/content"


# Item ids ---------------------------------------------------------------------------------------


def tool_item_id(kind: str, step_id: str, index: int) -> str:
    """The id of the ``kind`` item of call ``index`` of step ``step_id`` (see the module's docstring)."""
    suffix = step_id.removeprefix(_STEP_PREFIX)
    return f"{_PREFIXES[kind]}_{suffix}_{index}"


@dataclass(frozen=True)
class ToolItemRef:
    """What a tool-call item id names: the item's type, its run step and the call's index in the step."""

    kind: str
    step_id: str
    index: int


def parse_item_id(item_id: str) -> ToolItemRef | None:
    """The step and call a tool-call item id names, or None for any other id (a message's, or garbage)."""
    parts = item_id.split("_")
    if (
        len(parts) != 3
        or parts[0] not in _KINDS
        or not parts[1]
        or not (parts[2].isascii() and parts[2].isdigit())
    ):
        return None
    return ToolItemRef(_KINDS[parts[0]], _STEP_PREFIX + parts[1], int(parts[2]))


# Messages ---------------------------------------------------------------------------------------


def _file_name_of_marker(marker: str) -> str:
    # A file_citation's text is its marker, 【0:1†notes.md】: the file name follows the dagger.
    _, dagger, rest = marker.partition("†")
    return rest.removesuffix("】") if dagger else ""


def annotation_to_item(annotation: Mapping[str, Any]) -> dict[str, Any] | None:
    """A message text's annotation as an ``output_text`` annotation (None: one without a counterpart)."""
    return _annotation(annotation)


def _annotation(annotation: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = annotation.get("type")
    if kind == "file_citation":
        return {
            "type": "file_citation",
            "file_id": annotation["file_citation"]["file_id"],
            "filename": _file_name_of_marker(str(annotation.get("text", ""))),
            "index": int(annotation.get("start_index", 0)),
        }
    if kind == "file_path":
        return {
            "type": "file_path",
            "file_id": annotation["file_path"]["file_id"],
            "index": int(annotation.get("start_index", 0)),
        }
    return None


def _status(status: str) -> ItemStatus:
    if status == "completed":
        return "completed"
    return "in_progress" if status == "in_progress" else "incomplete"


def message_to_item(message: Message) -> dict[str, Any]:
    """``message`` as a ``message`` item. A user's text is ``input_text``, an assistant's ``output_text``
    with its ``file_citation``/``file_path`` annotations (the text keeps its 【…】 markers; an annotation's
    ``index`` is its marker's start); images are ``input_image`` (by file id or url); a refusal is a
    ``refusal``; the files attached to a user message follow its content as ``input_file`` parts."""
    assistant = message.role == "assistant"
    content: list[dict[str, Any]] = []
    for part in message.content:
        if part.type == "text":
            if assistant:
                annotations = [a for a in map(_annotation, part.text.annotations) if a is not None]
                content.append({"type": "output_text", "text": part.text.value, "annotations": annotations})
            else:
                content.append({"type": "input_text", "text": part.text.value})
        elif part.type == "image_file":
            image = part.image_file
            content.append(
                {
                    "type": "input_image",
                    "file_id": image.file_id,
                    "image_url": None,
                    "detail": image.detail or "auto",
                }
            )
        elif part.type == "image_url":
            url = part.image_url
            content.append(
                {"type": "input_image", "file_id": None, "image_url": url.url, "detail": url.detail or "auto"}
            )
        else:
            content.append({"type": "refusal", "refusal": part.refusal})
    for attachment in message.attachments or []:
        content.append({"type": "input_file", "file_id": attachment.file_id})
    return {
        "type": "message",
        "id": message.id,
        "role": message.role,
        "status": _status(message.status),
        "content": content,
    }


# Run steps --------------------------------------------------------------------------------------


def _queries(arguments: str) -> list[str]:
    # file_search's arguments are {"queries": [...]}; small models sometimes write {"query": "..."}.
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return []
    value = parsed.get("queries", parsed.get("query")) if isinstance(parsed, dict) else parsed
    if isinstance(value, str):
        return [value]
    return [str(query) for query in value] if isinstance(value, list) else []


def _code_output(output: Mapping[str, Any]) -> dict[str, Any] | None:
    if output.get("type") == "logs":
        return {"type": "logs", "logs": str(output.get("logs", ""))}
    if output.get("type") == "image":
        return {"type": "image", "url": FILE_CONTENT_URL.format(file_id=output["image"]["file_id"])}
    return None


def _search_result(
    result: Mapping[str, Any], with_text: bool, attributes: Mapping[str, Any] | None
) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "file_id": result.get("file_id"),
        "filename": result.get("file_name"),
        "score": result.get("score"),
        # The file's attributes when the search ran (the step's record keeps them); a file without any
        # shows none, as OpenAI's.
        "attributes": dict(attributes) if attributes else None,
        "text": None,
    }
    if with_text and result.get("content"):
        shown["text"] = "".join(str(part.get("text", "")) for part in result["content"])
    return shown


def _nth(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and index < len(values) else None


def step_to_items(
    step: RunStep,
    *,
    tool_io: Mapping[str, Any] | None = None,
    include: Collection[str] = (),
    container_id: str | None = None,
) -> list[dict[str, Any]]:
    """The items of a ``tool_calls`` step, one per call in the step's order, each function call followed by
    a ``function_call_output`` item once its output was submitted. A ``message_creation`` step gives none:
    its message is the item.

    ``tool_io`` (the step row's record of what built-in calls were asked, by call id) gives a file search
    its ``queries`` and its results' ``attributes``. Results and outputs are shown as OpenAI shows them:
    only when ``include`` asks (``file_search_call.results``, ``code_interpreter_call.outputs``); a
    result's text only when ``step`` holds it. A code_interpreter's ``container_id`` is the thread's id
    (assistd runs one code session per thread), or ``container_id`` where the run's code ran in another
    thread's session. A call that awaits its output is ``in_progress`` until the output is submitted."""
    if step.step_details.type != "tool_calls":
        return []
    status = _status(step.status)
    items: list[dict[str, Any]] = []
    for index, call in enumerate(step.step_details.tool_calls):
        raw = call if isinstance(call, dict) else call.model_dump()
        kind = raw.get("type")
        if kind == "function":
            function = raw["function"]
            output = function.get("output")
            items.append(
                {
                    "type": "function_call",
                    "id": tool_item_id("function_call", step.id, index),
                    "call_id": raw["id"],
                    "name": function["name"],
                    "arguments": function["arguments"],
                    # Its output submitted, the call is done even while the run's step goes on.
                    "status": "completed" if output is not None else status,
                }
            )
            if output is not None:
                items.append(
                    {
                        "type": "function_call_output",
                        "id": tool_item_id("function_call_output", step.id, index),
                        "call_id": raw["id"],
                        "output": output,
                        "status": "completed",
                    }
                )
        elif kind == "file_search":
            asked = (tool_io or {}).get(raw["id"]) or {}
            results = raw.get("file_search", {}).get("results") or []
            items.append(
                {
                    "type": "file_search_call",
                    "id": tool_item_id("file_search_call", step.id, index),
                    "queries": _queries(str(asked.get("arguments", ""))),
                    "status": status,
                    "results": (
                        [
                            _search_result(result, True, _nth(asked.get("attributes"), number))
                            for number, result in enumerate(results)
                        ]
                        if INCLUDE_FILE_SEARCH_RESULTS in include
                        else None
                    ),
                }
            )
        elif kind == "code_interpreter":
            code = raw.get("code_interpreter", {})
            outputs = [o for o in map(_code_output, code.get("outputs") or []) if o is not None]
            items.append(
                {
                    "type": "code_interpreter_call",
                    "id": tool_item_id("code_interpreter_call", step.id, index),
                    "code": code.get("input"),
                    "outputs": outputs if INCLUDE_CODE_OUTPUTS in include else None,
                    "status": status,
                    "container_id": container_id or step.thread_id,
                }
            )
        elif kind in _MCP_KINDS:
            items.append(_mcp_item(kind, raw[kind], tool_item_id(_MCP_KINDS[kind], step.id, index), status))
    return items


# A run step's MCP call type (``engine/response_mcp.py``) → its item's type.
_MCP_KINDS = {
    "mcp_list_tools": "mcp_list_tools",
    "mcp": "mcp_call",
    "mcp_approval_request": "mcp_approval_request",
    "mcp_approval_response": "mcp_approval_response",
}


def _mcp_item(kind: str, body: Mapping[str, Any], item_id: str, status: ItemStatus) -> dict[str, Any]:
    if kind == "mcp_list_tools":
        return {
            "type": "mcp_list_tools",
            "id": item_id,
            "server_label": body.get("server_label", ""),
            "tools": body.get("tools") or [],
            "error": body.get("error"),
        }
    if kind == "mcp_approval_response":
        return {
            "type": "mcp_approval_response",
            "id": item_id,
            "approval_request_id": body["approval_request_id"],
            "approve": body["approve"],
            "reason": body.get("reason"),
        }
    item = {
        "type": _MCP_KINDS[kind],
        "id": item_id,
        "server_label": body.get("server_label", ""),
        "name": body.get("name", ""),
        "arguments": body.get("arguments", ""),
    }
    if kind == "mcp":
        ran = "output" in body or "error" in body
        item.update(
            output=body.get("output"),
            error=body.get("error"),
            status=("failed" if body.get("error") else "completed") if ran else status,
            approval_request_id=body.get("approval_request_id"),
        )
    return item


# Input items ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionCallInput:
    """A ``function_call`` input item: a call the model made, sent back by the client."""

    call_id: str
    name: str
    arguments: str
    at: str


@dataclass(frozen=True)
class FunctionOutputInput:
    """A ``function_call_output`` input item: the client's output for call ``call_id``."""

    call_id: str
    output: str
    at: str


@dataclass(frozen=True)
class McpApprovalInput:
    """An ``mcp_approval_response`` input item: the client's answer to an ``mcp_approval_request``."""

    approval_request_id: str
    approve: bool
    reason: str | None
    at: str


@dataclass(frozen=True)
class McpListingInput:
    """An ``mcp_list_tools`` input item sent back without error: a server's tools as listed before."""

    server_label: str
    tools: list[dict[str, Any]]
    at: str


# MCP items a client sends back with a stateless history: the server listed and ran them already. A call
# that ran is carried to the model as a call and its output, a listing is kept as the server's listing;
# the others are taken and let be.
_MCP_ECHOED = ("mcp_list_tools", "mcp_call", "mcp_approval_request")


@dataclass
class ParsedInput:
    """Input items as Assistants sees them, each kind in input order: ``messages`` to add to the thread,
    ``instructions`` (the text of system/developer messages, where allowed), and the function calls and
    outputs (where allowed; what to do with them is the caller's: a Responses call submits the outputs to the
    run that awaits them). ``at`` of each names where it was in the request, e.g. ``input[2]``; ``files``
    are the file ids the messages name, each with where it was (``input[0].content[1].file_id``), to
    check before the messages are stored."""

    messages: list[MessageCreateParams] = field(default_factory=list)
    message_at: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    function_calls: list[FunctionCallInput] = field(default_factory=list)
    function_outputs: list[FunctionOutputInput] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    # ``mcp_approval_response`` items, and ``mcp_call`` items that ran, each as a call and its output (where
    # function items are allowed).
    approvals: list[McpApprovalInput] = field(default_factory=list)
    mcp_calls: list[tuple[FunctionCallInput, FunctionOutputInput]] = field(default_factory=list)
    listings: list[McpListingInput] = field(default_factory=list)


_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


def _part_to_param(
    part: Any, at: str, attachments: list[dict[str, Any]], files: list[tuple[str, str]]
) -> dict[str, Any] | None:
    """One content part as a message content part; an ``input_file`` becomes an attachment instead."""
    if not isinstance(part, Mapping):
        raise ParamValueError("a content part must be an object.", at)
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        text = part.get("text")
        if not isinstance(text, str):
            raise ParamValueError("a text part needs its 'text', a string.", f"{at}.text")
        return {"type": "text", "text": text}
    if kind == "input_image":
        detail = part.get("detail") or "auto"
        if part.get("file_id"):
            files.append((str(part["file_id"]), f"{at}.file_id"))
            return {"type": "image_file", "image_file": {"file_id": part["file_id"], "detail": detail}}
        if part.get("image_url"):
            url = part["image_url"]
            try:
                check_uri(url if isinstance(url, str) else "")
            except ValueError as exc:
                raise ParamValueError(f"'image_url' {exc}.", f"{at}.image_url") from None
            return {"type": "image_url", "image_url": {"url": url, "detail": detail}}
        raise ParamValueError("an input_image needs a 'file_id' or an 'image_url'.", at)
    if kind == "input_file":
        if not part.get("file_id") or part.get("file_data") or part.get("file_url"):
            raise ParamValueError(
                "assistd takes an input_file by 'file_id' only (upload the file first); "
                "'file_data' and 'file_url' are not supported.",
                at,
            )
        files.append((str(part["file_id"]), f"{at}.file_id"))
        # As an Assistants attachment: the file is searched (the thread's vector store takes it).
        attachments.append({"file_id": part["file_id"], "tools": [{"type": "file_search"}]})
        return None
    raise ParamValueError(
        f"content parts of type {kind!r} are not supported; use input_text, input_image or input_file.",
        f"{at}.type",
    )


def _text_only(params: Sequence[dict[str, Any]], at: str) -> str:
    texts = []
    for index, part in enumerate(params):
        if part["type"] != "text":
            raise ParamValueError(
                "system and developer messages may hold text only.", f"{at}.content[{index}]"
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _message(item: Mapping[str, Any], at: str, parsed: ParsedInput, allow_instructions: bool) -> None:
    role = item.get("role")
    if role not in _ROLES:
        raise ParamValueError(f"role must be one of {', '.join(_ROLES)}, not {role!r}.", f"{at}.role")
    content = item.get("content")
    attachments: list[dict[str, Any]] = []
    files: list[tuple[str, str]] = []
    if isinstance(content, str):
        parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
    elif isinstance(content, list) and content:
        parts = []
        for index, part in enumerate(content):
            converted = _part_to_param(part, f"{at}.content[{index}]", attachments, files)
            if converted is not None:
                parts.append(converted)
    else:
        raise ParamValueError(
            "content must be a string or a non-empty list of content parts.", f"{at}.content"
        )
    if role in ("system", "developer"):
        if not allow_instructions:
            raise ParamValueError(
                f"{role} messages cannot be added to a conversation: a thread holds user and assistant "
                "messages only; give instructions with the run or response instead.",
                f"{at}.role",
            )
        if attachments:
            raise ParamValueError("system and developer messages may hold text only.", f"{at}.content")
        parsed.instructions.append(_text_only(parts, at))
        return
    if not parts:
        # Files alone: a message needs some content, and the files are what it says.
        parts = [{"type": "text", "text": "(files attached)"}]
    body: dict[str, Any] = {"role": role, "content": parts}
    if attachments:
        body["attachments"] = attachments
    try:
        parsed.messages.append(MessageCreateParams.model_validate(body))
    except ValidationError as exc:
        # The message's content and attachments are made from the item's content parts, not one for one
        # (input_file parts become attachments): the item's content is what is named.
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        message = str(cause) if isinstance(cause, ParamValueError) else str(error["msg"])
        first = error["loc"][0] if error["loc"] else "content"
        where = "content" if first in ("content", "attachments") else str(first)
        raise ParamValueError(message, f"{at}.{where}") from exc
    parsed.message_at.append(at)
    parsed.files += files


def _function_output(value: Any, at: str) -> str:
    """A ``function_call_output``'s output as the text a tool message carries: a string, or ``input_text``
    parts (joined; a run's tool output is text only)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ParamValueError("output must be a string or a list of input_text parts.", at)
    texts = []
    for index, part in enumerate(value):
        if not isinstance(part, Mapping) or part.get("type") != "input_text":
            raise ParamValueError(
                "only input_text parts are supported in a function's output.", f"{at}[{index}]"
            )
        if not isinstance(part.get("text"), str):
            raise ParamValueError("a text part needs its 'text', a string.", f"{at}[{index}].text")
        texts.append(part["text"])
    return "".join(texts)


def _mcp_call(item: Mapping[str, Any], at: str, parsed: ParsedInput) -> None:
    """An ``mcp_call`` item sent back: a call and its output, when it ran (its output or its error)."""
    call_id, name, arguments = item.get("id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise ParamValueError("an mcp_call needs 'id', 'name' and 'arguments', strings.", at)
    output, error = item.get("output"), item.get("error")
    if output is None and error is None:
        return  # never ran (or waits for its approval): nothing to carry
    text = output if isinstance(output, str) else f"Error: {json.dumps(error)}"
    parsed.mcp_calls.append(
        (FunctionCallInput(call_id, name, arguments, at), FunctionOutputInput(call_id, text, at))
    )


def _mcp_listing(item: Mapping[str, Any], at: str, parsed: ParsedInput) -> None:
    """An ``mcp_list_tools`` item sent back: the server's listing, unless it failed."""
    label, tools = item.get("server_label"), item.get("tools")
    if not isinstance(label, str) or not label:
        raise ParamValueError("server_label must be a non-empty string.", f"{at}.server_label")
    if not isinstance(tools, list):
        raise ParamValueError("tools must be a list of tools.", f"{at}.tools")
    shown: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise ParamValueError("a tool needs its 'name', a string.", f"{at}.tools[{index}]")
        schema = tool.get("input_schema")
        if not isinstance(schema, Mapping):
            raise ParamValueError("input_schema must be an object.", f"{at}.tools[{index}].input_schema")
        description, annotations = tool.get("description"), tool.get("annotations")
        shown.append(
            {
                "name": tool["name"],
                "description": description if isinstance(description, str) else None,
                "input_schema": dict(schema),
                "annotations": dict(annotations) if isinstance(annotations, Mapping) else None,
            }
        )
    if item.get("error") is None:
        parsed.listings.append(McpListingInput(label, shown, at))


def input_to_messages(
    value: Any,
    *,
    at: str = "input",
    allow_instructions: bool = False,
    allow_function_items: bool = False,
) -> ParsedInput:
    """Input items (a string, or a list of items as the Responses API takes them) as Assistants messages.

    A string is one user message. A list holds messages (the easy form ``{role, content}``, ``content`` a
    string or parts, or the item form with ``type: "message"``) with parts ``input_text``,
    ``output_text`` (an assistant's earlier reply sent back), ``input_image`` (``file_id`` or
    ``image_url``) and ``input_file`` (by ``file_id`` only: it becomes an attachment searched with
    file_search).

    Roles ``user`` and ``assistant`` become messages. ``system`` and ``developer`` cannot be thread messages:
    with ``allow_instructions`` their text is collected in ``instructions``, without it they are refused.
    ``function_call`` and ``function_call_output`` items are collected with ``allow_function_items`` and
    refused without it (a conversation's calls come from its runs' steps).

    Raises ``ParamValueError`` naming the offending parameter (``input[2].content[0].type``), for the api
    layer to answer with a 400."""
    parsed = ParsedInput()
    if isinstance(value, str):
        _message({"role": "user", "content": value}, at, parsed, allow_instructions)
        return parsed
    if not isinstance(value, list):
        raise ParamValueError("must be a string or a list of input items.", at)
    for index, item in enumerate(value):
        where = f"{at}[{index}]"
        if not isinstance(item, Mapping):
            raise ParamValueError("an input item must be an object.", where)
        kind = item.get("type", "message")
        if kind == "message":
            _message(item, where, parsed, allow_instructions)
        elif kind in ("function_call", "function_call_output"):
            if not allow_function_items:
                raise ParamValueError(
                    f"{kind} items cannot be added to a conversation: its function calls and their outputs "
                    "come from its runs (submit outputs to the run that awaits them).",
                    f"{where}.type",
                )
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ParamValueError("call_id must be a non-empty string.", f"{where}.call_id")
            if kind == "function_call":
                name, arguments = item.get("name"), item.get("arguments")
                if not isinstance(name, str) or not isinstance(arguments, str):
                    raise ParamValueError("a function_call needs 'name' and 'arguments', strings.", where)
                parsed.function_calls.append(FunctionCallInput(call_id, name, arguments, where))
            else:
                output = _function_output(item.get("output"), f"{where}.output")
                parsed.function_outputs.append(FunctionOutputInput(call_id, output, where))
        elif kind in (*_MCP_ECHOED, "mcp_approval_response") and allow_function_items:
            if kind == "mcp_approval_response":
                request_id, approve = item.get("approval_request_id"), item.get("approve")
                if not isinstance(request_id, str) or not request_id:
                    raise ParamValueError(
                        "approval_request_id must be a non-empty string.", f"{where}.approval_request_id"
                    )
                if not isinstance(approve, bool):
                    raise ParamValueError("approve must be a boolean.", f"{where}.approve")
                reason = item.get("reason")
                if reason is not None and not isinstance(reason, str):
                    raise ParamValueError("reason must be a string.", f"{where}.reason")
                parsed.approvals.append(McpApprovalInput(request_id, approve, reason, where))
            elif kind == "mcp_call":
                _mcp_call(item, where, parsed)
            elif kind == "mcp_list_tools":
                _mcp_listing(item, where, parsed)
        else:
            raise ParamValueError(
                f"input items of type {kind!r} are not supported; use message, function_call or "
                "function_call_output.",
                f"{where}.type",
            )
    return parsed
