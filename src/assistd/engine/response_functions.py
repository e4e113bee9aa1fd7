"""Function calls in responses: the calls a response's run made, and the calls and outputs its input gives.

A response is a run; a run that calls functions stops ``requires_action``. The response ends there,
``completed`` with its ``function_call`` items (as OpenAI's does), and one run may so stand for several
responses in a row, each a *segment* of its steps:

- A response starts where the run was when the response was made (its record's ``steps_before``: the
  number of the run's steps that came before it) and ends at the first step that calls functions (the
  run waited there), or with the run.
- Its follow-up (``previous_response_id``, or a conversation whose run waits, and ``function_call_output``
  items) submits the outputs to that waiting run, as ``submit_tool_outputs`` does: the run goes on, and
  what it does next is the follow-up's segment. The thread keeps one run, its tool calls and outputs in
  its steps, as the Assistants API shows a run that required action.
- A stateless history (``function_call`` and ``function_call_output`` items sent back, without a waiting
  run: OpenAI's Agents SDK sends the whole history each turn) is written into the new run as steps that
  came before it: from the first function item on, each run of function items is a completed
  ``tool_calls`` step (each call with its output) and each message a message of the run with its
  ``message_creation`` step, in input order. The context building reads a run's steps after the thread's
  history (``engine/context.py``), so the model sees them in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError
from ..protocol.items import (
    FunctionCallInput,
    FunctionOutputInput,
    ParsedInput,
)
from ..protocol.messages import MessageCreateParams
from ..protocol.run_steps import RunStep
from ..store import messages as message_store
from ..store import runs as run_store
from ..store.clock import now
from ..store.models import MessageRow, RunRow, RunStepRow

__all__ = [
    "STEPS_BEFORE",
    "FunctionHistory",
    "Segment",
    "check_outputs",
    "history_of",
    "segment_of",
    "segment_output",
]

# The key of a response record's ``request`` that holds where its segment of the run starts; never echoed.
STEPS_BEFORE = "steps_before"


def _position(at: str) -> int:
    # ``at`` is where an item was in the request: ``input[3]``.
    return int(at.removeprefix("input[").split("]", 1)[0])


def _invalid(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


# A waiting run's follow-up ------------------------------------------------------------------------


def check_outputs(parsed: ParsedInput, expected: Sequence[str]) -> list[FunctionOutputInput]:
    """The outputs ``parsed`` gives for the calls ``expected`` (a waiting run's), one per call. Raises a
    400 naming ``input[i]`` for an item that is not an output of one of them (a ``function_call`` item of
    one of them, sent back, is let be), and naming ``input`` when an expected call has no output."""
    if parsed.messages:
        raise _invalid(
            "The previous response awaits function call outputs: only function_call_output items may "
            "follow it.",
            parsed.message_at[0],
        )
    for call in parsed.function_calls:
        if call.call_id not in expected:
            raise _invalid(
                f"No function call with call_id '{call.call_id}' awaits its output.", f"{call.at}.call_id"
            )
    given: dict[str, FunctionOutputInput] = {}
    for output in parsed.function_outputs:
        if output.call_id not in expected:
            raise _invalid(
                f"No tool call found for function call output with call_id {output.call_id}.",
                f"{output.at}.call_id",
            )
        if output.call_id in given:
            raise _invalid(f"Duplicate output for call_id {output.call_id}.", f"{output.at}.call_id")
        given[output.call_id] = output
    missing = [call_id for call_id in expected if call_id not in given]
    if missing:
        raise _invalid(f"No tool output found for function call {missing[0]}.", "input")
    return [given[call_id] for call_id in expected]


# A stateless history ------------------------------------------------------------------------------


@dataclass
class _Calls:
    """A run of consecutive function items: its calls, in input order."""

    calls: list[FunctionCallInput] = field(default_factory=list)


@dataclass
class FunctionHistory:
    """Input with function items and no run awaiting them: ``head`` are the messages before the first
    function item (added to the thread as any input), ``tail`` the rest in input order, each a message
    (with where it was) or a run of calls, whose outputs are ``outputs`` by call id."""

    head: list[tuple[MessageCreateParams, str]]
    tail: list[tuple[MessageCreateParams, str] | _Calls]
    outputs: dict[str, str]

    async def write(self, session: AsyncSession, run: RunRow) -> tuple[list[str], int]:
        """Write the tail into ``run`` (not yet inserted) as its steps, completed, and its messages: the ids
        of the messages written, and the number of steps."""
        ids: list[str] = []
        steps: list[RunStepRow] = []
        for entry in self.tail:
            if isinstance(entry, _Calls):
                calls = [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": call.arguments,
                            "output": self.outputs[call.call_id],
                        },
                    }
                    for call in entry.calls
                ]
                step = run_store.new_step_row(run, "tool_calls", {"type": "tool_calls", "tool_calls": calls})
            else:
                message, at = entry
                row: MessageRow = await message_store.insert(
                    session, run.tenant, run.thread_id, message, run_id=run.id, at=at
                )
                ids.append(row.id)
                details = {"type": "message_creation", "message_creation": {"message_id": row.id}}
                step = run_store.new_step_row(run, "message_creation", details)
            step.status, step.completed_at = "completed", now()
            session.add(step)
            # Flushed one by one: steps are read back in the order they were inserted (their pk).
            await session.flush()
            steps.append(step)
        return ids, len(steps)


def history_of(parsed: ParsedInput) -> FunctionHistory | None:
    """``parsed``'s messages and function items in input order (None without function items). Every call
    needs its output, and every output its call, in the input: else a 400 naming ``input`` (a call without
    output) or the output's ``input[i].call_id``."""
    # MCP calls sent back (``mcp_call`` items the server ran) are a call and its output each.
    function_calls = [*parsed.function_calls, *(call for call, _ in parsed.mcp_calls)]
    function_outputs = [*parsed.function_outputs, *(output for _, output in parsed.mcp_calls)]
    if not function_calls and not function_outputs:
        return None
    called = {call.call_id for call in function_calls}
    outputs: dict[str, str] = {}
    for output in function_outputs:
        if output.call_id not in called:
            raise _invalid(
                f"No tool call found for function call output with call_id {output.call_id}.",
                f"{output.at}.call_id",
            )
        outputs[output.call_id] = output.output
    for call in function_calls:
        if call.call_id not in outputs:
            raise _invalid(f"No tool output found for function call {call.call_id}.", "input")
    entries: list[tuple[int, Any]] = [
        *(
            (_position(at), (message, at))
            for message, at in zip(parsed.messages, parsed.message_at, strict=True)
        ),
        *((_position(call.at), call) for call in function_calls),
        *((_position(output.at), None) for output in function_outputs),
    ]
    entries.sort(key=lambda entry: entry[0])
    first = min(position for position, value in entries if not isinstance(value, tuple))
    head = [value for position, value in entries if position < first and isinstance(value, tuple)]
    tail: list[tuple[MessageCreateParams, str] | _Calls] = []
    for position, value in entries:
        if position < first:
            continue
        if isinstance(value, tuple):
            tail.append(value)
        elif isinstance(value, FunctionCallInput):
            if not tail or not isinstance(tail[-1], _Calls):
                tail.append(_Calls())
            last = tail[-1]
            assert isinstance(last, _Calls)
            last.calls.append(value)
    return FunctionHistory(
        head, [entry for entry in tail if not isinstance(entry, _Calls) or entry.calls], outputs
    )


# A response's segment of its run ----------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A response's steps of its run, and whether they end at a function call (the run waited there)."""

    steps: list[RunStep]
    waited: bool

    def usage(self) -> dict[str, int] | None:
        """The tokens its steps used (a run's usage is the sum over all its segments)."""
        used = [step.usage for step in self.steps if step.usage is not None]
        if not used:
            return None
        return {
            "input_tokens": sum(u.prompt_tokens for u in used),
            "output_tokens": sum(u.completion_tokens for u in used),
            "total_tokens": sum(u.total_tokens for u in used),
        }


def segment_output(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A segment's output items (``engine/response_tools.output_items`` of its steps) as its response shows
    them: a function call ``completed`` (the model wrote it whole); the outputs given to the calls are the
    next response's input, not this one's output."""
    return [
        {**item, "status": "completed"} if item["type"] == "function_call" else item
        for item in items
        if item["type"] != "function_call_output"
    ]


def _calls_functions(step: RunStep) -> bool:
    details = step.step_details
    return details.type == "tool_calls" and any(
        (call if isinstance(call, dict) else call.model_dump()).get("type") == "function"
        for call in details.tool_calls
    )


def segment_of(steps: Sequence[RunStep], steps_before: int) -> Segment:
    """The steps of the response whose segment starts after ``steps_before`` of ``steps`` (its run's)."""
    mine: list[RunStep] = []
    for step in steps[steps_before:]:
        if step.status == "failed" and step.step_details.type == "tool_calls":
            continue  # a turn cut short (a crash): it started over, and its calls were never whole
        mine.append(step)
        if _calls_functions(step):
            return Segment(mine, True)
    return Segment(mine, False)
