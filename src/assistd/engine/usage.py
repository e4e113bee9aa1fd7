"""A run's stored usage (``runs.usage``, ``run_steps.usage``): the Assistants API's three counts, plus the
model's token details where it gives them, as OpenAI's Chat Completions names them
(``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``).

The Assistants API's ``Usage`` has no place for the details: its wire type (``protocol.runs.Usage``) leaves
them out, so runs and steps show the three counts as before. The Responses API shows them
(``input_tokens_details``, ``output_tokens_details``: ``engine/responses.py``). A detail is stored only
when it is not 0, so a model that gives none leaves the stored usage as it always was.
"""

from __future__ import annotations

from typing import Any

from ..llm.types import TokenUsage

__all__ = ["added", "cached_tokens", "of_turn", "reasoning_tokens"]

_PROMPT_DETAILS = "prompt_tokens_details"
_COMPLETION_DETAILS = "completion_tokens_details"


def of_turn(usage: TokenUsage) -> dict[str, Any]:
    """One model turn's usage as it is stored."""
    stored: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        stored[_PROMPT_DETAILS] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens:
        stored[_COMPLETION_DETAILS] = {"reasoning_tokens": usage.reasoning_tokens}
    return stored


def added(total: dict[str, Any] | None, turn: dict[str, Any]) -> dict[str, Any]:
    """The run's usage so far (None before its first turn) with a turn's added, details included."""
    total = total or {}
    summed: dict[str, Any] = {
        key: int(total.get(key) or 0) + int(turn.get(key) or 0)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    cached = cached_tokens(total) + cached_tokens(turn)
    reasoning = reasoning_tokens(total) + reasoning_tokens(turn)
    if cached:
        summed[_PROMPT_DETAILS] = {"cached_tokens": cached}
    if reasoning:
        summed[_COMPLETION_DETAILS] = {"reasoning_tokens": reasoning}
    return summed


def cached_tokens(stored: dict[str, Any] | None) -> int:
    return _detail(stored, _PROMPT_DETAILS, "cached_tokens")


def reasoning_tokens(stored: dict[str, Any] | None) -> int:
    return _detail(stored, _COMPLETION_DETAILS, "reasoning_tokens")


def _detail(stored: dict[str, Any] | None, group: str, name: str) -> int:
    details = (stored or {}).get(group)
    return int(details.get(name) or 0) if isinstance(details, dict) else 0
