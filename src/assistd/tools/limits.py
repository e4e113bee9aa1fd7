"""A run's bound on its built-in tool calls (a response's ``max_tool_calls``).

OpenAI's ``max_tool_calls`` bounds the built-in tool calls of a response, all tools together, and ignores the
calls past it. A run keeps the bound on each of its built-in tools entries (the run has no column for it;
``engine/response_tools.py`` writes it), where the Assistants wire models do not show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_TOOL_CALLS = "max_tool_calls"
# What a call past the bound gets for an output: it is not run, and the model is told why.
NOT_RUN = (
    "Not run: this response's limit of built-in tool calls (max_tool_calls) is reached. "
    "Answer with what you have."
)


def max_tool_calls(tools: Iterable[dict[str, Any]]) -> int | None:
    """The run's bound on its built-in tool calls, or None when it has none."""
    bounds = [int(tool[MAX_TOOL_CALLS]) for tool in tools if isinstance(tool.get(MAX_TOOL_CALLS), int)]
    return min(bounds) if bounds else None
