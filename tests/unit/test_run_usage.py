"""engine/usage.py: a run's stored usage, with the model's token details summed over its turns."""

from __future__ import annotations

from assistd.engine import usage
from assistd.llm.types import TokenUsage
from assistd.protocol.runs import Usage


def test_of_turn_keeps_details_only_when_given() -> None:
    plain = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert usage.of_turn(TokenUsage(10, 3)) == plain
    assert usage.of_turn(TokenUsage(10, 3, cached_tokens=8, reasoning_tokens=2)) == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }


def test_added_sums_counts_and_details_over_turns() -> None:
    first = usage.added(None, usage.of_turn(TokenUsage(10, 3, cached_tokens=8)))
    both = usage.added(first, usage.of_turn(TokenUsage(20, 5, reasoning_tokens=4)))
    assert both == {
        "prompt_tokens": 30,
        "completion_tokens": 8,
        "total_tokens": 38,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 4},
    }
    assert (usage.cached_tokens(both), usage.reasoning_tokens(both)) == (8, 4)
    # A usage stored before the details existed reads as none.
    assert usage.cached_tokens({"prompt_tokens": 1}) == usage.reasoning_tokens(None) == 0


def test_assistants_wire_usage_shows_the_counts_only() -> None:
    stored = usage.of_turn(TokenUsage(10, 3, cached_tokens=8, reasoning_tokens=2))
    assert Usage.model_validate(stored).model_dump() == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
    }
