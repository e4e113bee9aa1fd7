"""Filling an assistant's instructions from a prompt's variables, and counting a prompt with tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from assistd.engine.context import count_prompt, estimate_tokens
from assistd.engine.prompts import fill
from assistd.errors import InvalidRequestError
from assistd.llm.types import ChatRequest


def test_fill_replaces_every_placeholder_once() -> None:
    template = "Help {{name}} with {{ topic }}; {{name}} again."
    # A value holding a placeholder is text: it is not filled in turn.
    assert fill(template, {"name": "Ada", "topic": "{{name}}"}) == "Help Ada with {{name}}; Ada again."
    assert fill("No placeholders.", {}) == "No placeholders."


def test_fill_refuses_a_missing_or_unknown_variable() -> None:
    with pytest.raises(InvalidRequestError) as missing:
        fill("{{a}} and {{b}} and {{c}}", {"b": "x"})
    assert (missing.value.param, missing.value.message) == (
        "prompt.variables",
        "Missing prompt variables: a, c.",
    )
    with pytest.raises(InvalidRequestError) as unknown:
        fill("{{a}}", {"a": "x", "z": "y"})
    assert unknown.value.param == "prompt.variables.z"


class _Tokenizer:
    """A provider registry whose model counts a token per character of each message's content."""

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int:
        return sum(len(message["content"]) for message in messages)


def test_count_prompt_counts_the_tools_with_the_models_tokenizer() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Hello"}]
    with_tools = ChatRequest(model="m", messages=messages, tools=tools)
    providers: Any = _Tokenizer()
    assert asyncio.run(count_prompt(with_tools, providers)) == 5 + len(json.dumps(tools))
    # Without a tokenizer, the estimate a run's prompt gets.
    without = ChatRequest(model="m", messages=messages)
    assert asyncio.run(count_prompt(without, None)) == estimate_tokens(messages)
