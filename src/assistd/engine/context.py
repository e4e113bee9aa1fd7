"""What the model sees for a run: instructions, the thread so far, and this run's own steps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError
from ..llm.registry import ProviderRegistry
from ..llm.types import ChatRequest
from ..store import messages as message_store
from ..store import runs as run_store
from ..store.models import MessageRow, RunRow
from ..tools import code_interpreter, file_search
from ..tools.citations import Source

# Without a token budget, the model's context is unknown: cap how much history a run reads.
HISTORY_CAP = 1000
CHARS_PER_TOKEN = 4
# Where code_interpreter's code finds its files when the sandbox does not say otherwise.
DATA_PATH = "/mnt/data"


class PromptTooLong(Exception):
    """Even after truncation the prompt exceeds the run's ``max_prompt_tokens``."""


@dataclass(frozen=True)
class RunContext:
    request: ChatRequest
    completion_used: int
    # The passages this run's searches numbered so far, for turning the model's markers into citations.
    sources: dict[int, Source]
    # The built-in tool calls (file_search, code_interpreter) this run made so far, for ``max_tool_calls``.
    builtin_calls: int = 0


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(json.dumps(message, ensure_ascii=False)) for message in messages) // CHARS_PER_TOKEN + 1


def _message_to_chat(row: MessageRow) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    for part in row.content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part["text"]["value"]})
        elif part.get("type") == "image_url":
            parts.append({"type": "image_url", "image_url": part["image_url"]})
    if not parts:
        return None
    if row.role == "assistant" or all(p["type"] == "text" for p in parts):
        return {"role": row.role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": row.role, "content": parts}


def function_tools(
    tools: list[dict[str, Any]], code_interpreter_definition: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The functions the model is offered: the run's own, and one per built-in tool assistd runs."""
    offered = []
    for tool in tools:
        if tool.get("type") == "function":
            offered.append({"type": "function", "function": tool["function"]})
    builtin = builtin_tools(tools)
    if file_search.NAME in builtin:
        offered.append(file_search.DEFINITION)
    if code_interpreter.NAME in builtin:
        offered.append(code_interpreter_definition or code_interpreter.definition(DATA_PATH, []))
    return offered


def builtin_tools(tools: list[dict[str, Any]]) -> set[str]:
    """Names of offered functions that stand for built-in tools (a run's own function of that name wins)."""
    own = {tool["function"]["name"] for tool in tools if tool.get("type") == "function"}
    kinds = {tool.get("type") for tool in tools}
    return {name for name in (file_search.NAME, code_interpreter.NAME) if name in kinds and name not in own}


def _tool_choice(choice: Any, offered: list[dict[str, Any]]) -> str | dict[str, Any] | None:
    if not offered:
        return None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            name = choice["function"]["name"]
            if name not in {tool["function"]["name"] for tool in offered}:
                # An MCP server's tool the server did not list (or its listing failed): a tool is required.
                return "required"
            return {"type": "function", "function": {"name": name}}
        if choice.get("type") in (file_search.NAME, code_interpreter.NAME):
            return {"type": "function", "function": {"name": choice["type"]}}
        return "required"
    return str(choice) if choice else None


def _response_format(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and value.get("type") in ("json_object", "json_schema"):
        return value
    return None


async def build(
    session: AsyncSession,
    run: RunRow,
    providers: ProviderRegistry | None = None,
    data_path: str = DATA_PATH,
    *,
    fresh: bool = False,
    extra_functions: Sequence[dict[str, Any]] = (),
) -> RunContext:
    """``fresh``: the run's first turn since it was queued new, so it has no steps to read.
    ``extra_functions``: more functions to offer (a response's MCP servers' tools)."""
    strategy = run.truncation_strategy or {"type": "auto"}
    limit = strategy.get("last_messages") if strategy.get("type") == "last_messages" else HISTORY_CAP
    history = [
        chat
        for row in await message_store.history(session, run.thread_id, limit=limit)
        if row.run_id != run.id and (chat := _message_to_chat(row)) is not None
    ]
    own, completion_used, sources, builtin_calls = ([], 0, {}, 0) if fresh else await _own_turns(session, run)
    system = [{"role": "system", "content": run.instructions}] if run.instructions else []

    max_tokens = None
    if run.max_completion_tokens is not None:
        max_tokens = max(1, run.max_completion_tokens - completion_used)
    budget = providers.prompt_budget(run.model, max_tokens) if providers is not None else None
    await _fit(system, history, own, run, budget, _counter(providers, run.model))

    code_definition = None
    if code_interpreter.NAME in builtin_tools(run.tools):
        # The model is told which files its code finds, by the names they have in the session.
        names = list(code_interpreter.file_names(await code_interpreter.input_files(session, run)))
        code_definition = code_interpreter.definition(data_path, names)
    offered = function_tools(run.tools, code_definition)
    named = {tool["function"]["name"] for tool in offered}
    offered += [tool for tool in extra_functions if tool["function"]["name"] not in named]
    request = ChatRequest(
        model=run.model,
        messages=system + history + own,
        tools=offered,
        tool_choice=_tool_choice(_choice_now(run.tool_choice, own), offered),
        parallel_tool_calls=run.parallel_tool_calls if offered else None,
        temperature=run.temperature,
        top_p=run.top_p,
        max_tokens=max_tokens,
        response_format=_response_format(run.response_format),
        reasoning_effort=run.reasoning_effort,
        top_logprobs=run.top_logprobs,
    )
    return RunContext(
        request=request, completion_used=completion_used, sources=sources, builtin_calls=builtin_calls
    )


# What a chat template may add around the messages: role markers per message, a default system prompt.
_TEMPLATE_TOKENS_PER_MESSAGE = 16
_TEMPLATE_TOKENS = 256


def upper_bound_tokens(messages: list[dict[str, Any]]) -> int:
    """More tokens than ``messages`` can take: a byte-level tokenizer spends at least a byte a token."""
    size = sum(len(json.dumps(message, ensure_ascii=False).encode()) for message in messages)
    return size + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + _TEMPLATE_TOKENS


def _choice_now(choice: Any, turns: list[dict[str, Any]]) -> Any:
    """A forced or required tool applies until the run has called tools, or it would call them forever:
    after a named function's call the model answers with its result; after ``required`` it chooses freely."""
    if not any(turn.get("tool_calls") for turn in turns):
        return choice
    return "none" if isinstance(choice, dict) else "auto"


Counter = Callable[[list[dict[str, Any]]], Awaitable[int]]


def _counter(providers: ProviderRegistry | None, model: str) -> Counter:
    """Counts a prompt's tokens with the model's own tokenizer where its provider has one, else estimates."""

    async def count(messages: list[dict[str, Any]]) -> int:
        exact = await providers.count_tokens(model, messages) if providers is not None else None
        return exact if exact is not None else estimate_tokens(messages)

    return count


async def _fit(
    system: list[dict[str, Any]],
    history: list[dict[str, Any]],
    own: list[dict[str, Any]],
    run: RunRow,
    budget: int | None,
    count: Counter,
) -> None:
    """Drop the oldest history until the prompt fits ``max_prompt_tokens`` and the model's context.

    The newest message, this run's own turns and the instructions always stay: a prompt without the
    question is no answer to it. Raises when even that does not fit.
    """
    limits = [limit for limit in (run.max_prompt_tokens, budget) if limit is not None]
    if not limits:
        return
    limit = min(limits)
    if upper_bound_tokens(system + history + own) <= limit:
        return  # fits whatever the tokenizer says: spare the count (a tokenizer call for local models)
    total = await count(system + history + own)
    while total > limit and len(history) > 1:
        # An exact count may cost a tokenizer call: drop by estimate scaled to the exact count, then recount.
        scale = total / max(1, estimate_tokens(system + history + own))
        while len(history) > 1 and estimate_tokens(system + history + own) * scale > limit:
            history.pop(0)
        total = await count(system + history + own)
        if total > limit and len(history) > 1:
            history.pop(0)
            total = await count(system + history + own)
    if total <= limit:
        return
    if run.max_prompt_tokens is not None and total > run.max_prompt_tokens:
        raise PromptTooLong
    raise InvalidRequestError(
        f"The prompt needs {total} tokens, more than the {budget} that the context of the model "
        f"'{run.model}' leaves for it.",
        param="model",
    )


async def _own_turns(
    session: AsyncSession, run: RunRow
) -> tuple[list[dict[str, Any]], int, dict[int, Source], int]:
    """This run's earlier model turns (messages written, tools called and answered) as chat messages, the
    completion tokens they used, the sources its searches numbered and the built-in calls it made."""
    turns: list[dict[str, Any]] = []
    completion_used = 0
    builtin_calls = 0
    sources: dict[int, Source] = {}
    steps = await run_store.steps_of(session, run.id)
    written = [
        s.step_details["message_creation"]["message_id"]
        for s in steps
        if s.step_details.get("type") == "message_creation"
    ]
    own_messages = {row.id: row for row in await message_store.by_ids(session, written)} if written else {}
    for step in steps:
        if step.status == "failed":
            # A turn cut short by a crash or a shutdown (``state.resume`` failed its steps): it starts over,
            # and the model must not see the half answer or the calls it never finished.
            continue
        if step.usage:
            completion_used += int(step.usage.get("completion_tokens", 0))
        details = step.step_details
        if details.get("type") == "message_creation":
            message = own_messages.get(details["message_creation"]["message_id"])
            if message is not None and (chat := _message_to_chat(message)) is not None:
                turns.append(chat)
            continue
        calls: list[tuple[str, str, str, str]] = []  # id, name, arguments, output
        io = step.tool_io or {}
        for call in details.get("tool_calls", []):
            if call.get("type") == "function":
                function = call["function"]
                calls.append(
                    (call["id"], function["name"], function["arguments"], function.get("output") or "")
                )
            elif (seen := io.get(call.get("id", ""))) is not None:
                builtin_calls += 1
                calls.append((call["id"], seen["name"], seen["arguments"], seen["output"]))
                for number, stored in (seen.get("sources") or {}).items():
                    sources[int(number)] = Source.from_stored(stored)
        if not calls:
            continue
        turns.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                    for call_id, name, arguments, _ in calls
                ],
            }
        )
        turns += [
            {"role": "tool", "tool_call_id": call_id, "content": output} for call_id, _, _, output in calls
        ]
    return turns, completion_used, sources, builtin_calls


async def count_prompt(request: ChatRequest, providers: ProviderRegistry | None) -> int:
    """The tokens ``request`` sends as its prompt: its messages, counted as ``_fit`` counts them, and its
    tools' definitions, counted as one system message holding their JSON (a chat template writes them into
    the prompt in some such form; the exact one is the model's)."""
    messages = list(request.messages)
    if request.tools:
        messages.append({"role": "system", "content": json.dumps(request.tools, ensure_ascii=False)})
    return await _counter(providers, request.model)(messages)
