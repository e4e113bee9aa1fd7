"""Tools of the Responses API that assistd does not serve: each is a 400 naming ``tools[i].type`` whose
message says so, through the official SDK, for a create and for a count alike; nothing reaches the model."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from fake_upstream import FakeUpstream

# One of each, in the shape the SDK's ``ToolParam`` gives it.
UNSERVED: list[dict[str, Any]] = [
    {"type": "web_search"},
    {"type": "web_search_2025_08_26", "search_context_size": "low"},
    {"type": "web_search_preview"},
    {"type": "web_search_preview_2025_03_11"},
    {"type": "image_generation", "size": "1024x1024"},
    {"type": "computer"},
    {"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "linux"},
    {"type": "local_shell"},
    {"type": "shell"},
    {"type": "apply_patch"},
    {"type": "custom", "name": "grammar_tool", "description": "Free-form input."},
    {"type": "namespace", "name": "crm", "description": "CRM tools.", "tools": []},
    {"type": "tool_search"},
    {"type": "programmatic_tool_calling"},
]


@pytest.mark.parametrize("tool", UNSERVED, ids=[tool["type"] for tool in UNSERVED])
def test_unserved_tool_is_refused_by_name(client: OpenAI, fake: FakeUpstream, tool: dict[str, Any]) -> None:
    kind = tool["type"]
    expected = (
        f"Invalid 'tools[0].type': tools of type '{kind}' are not served by assistd: it has no such tool."
    )
    with pytest.raises(openai.BadRequestError) as created:
        client.responses.create(model="fake-model", input="Hi", tools=[tool])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError) as counted:
        client.responses.input_tokens.count(model="fake-model", input="Hi", tools=[tool])  # type: ignore[list-item]
    for caught in (created.value, counted.value):
        assert caught.status_code == 400
        assert caught.body == {
            "message": expected,
            "type": "invalid_request_error",
            "param": "tools[0].type",
            "code": "invalid_value",
        }
    assert fake.requests == []
