"""Attribute filters of vector store search (OpenAI's comparison and compound filters), evaluated per file."""

from __future__ import annotations

from typing import Any

from ..protocol.vector_stores import ComparisonFilter, CompoundFilter, Filter


def _compare(op: str, have: Any, want: Any) -> bool:
    if op in ("in", "nin"):
        found = isinstance(want, list) and have in want
        return found if op == "in" else not found
    if op == "eq":
        return bool(have == want)
    if op == "ne":
        return bool(have != want)
    # Ordering only between values of one kind: a number is never "greater" than a string.
    if isinstance(have, bool) or isinstance(want, bool):
        return False
    numeric = isinstance(have, int | float) and isinstance(want, int | float)
    if not numeric and not (isinstance(have, str) and isinstance(want, str)):
        return False
    if op == "gt":
        return bool(have > want)
    if op == "gte":
        return bool(have >= want)
    if op == "lt":
        return bool(have < want)
    return bool(have <= want)


def matches(rule: Filter, attributes: dict[str, Any]) -> bool:
    if isinstance(rule, ComparisonFilter):
        if rule.key not in attributes:
            return rule.type in ("ne", "nin")
        return _compare(rule.type, attributes[rule.key], rule.value)
    assert isinstance(rule, CompoundFilter)
    results = (matches(inner, attributes) for inner in rule.filters)
    return all(results) if rule.type == "and" else any(results)
