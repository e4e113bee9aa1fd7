from __future__ import annotations

from assistd.engine.state import ACTIVE, TERMINAL, can_transition


def test_terminal_statuses_never_move() -> None:
    for status in TERMINAL:
        for other in ACTIVE | TERMINAL:
            assert not can_transition(status, other)


def test_openai_lifecycle_edges() -> None:
    allowed = [
        ("queued", "in_progress"),
        ("in_progress", "requires_action"),
        ("requires_action", "queued"),
        ("in_progress", "completed"),
        ("in_progress", "incomplete"),
        ("in_progress", "failed"),
        ("in_progress", "cancelling"),
        ("cancelling", "cancelled"),
        ("requires_action", "expired"),
        ("queued", "cancelled"),
        ("requires_action", "cancelled"),
    ]
    for current, new in allowed:
        assert can_transition(current, new), (current, new)
    refused = [("queued", "completed"), ("requires_action", "completed"), ("queued", "requires_action")]
    for current, new in refused:
        assert not can_transition(current, new), (current, new)
