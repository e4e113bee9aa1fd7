from __future__ import annotations

from assistd.api.errors import param_name


def test_param_names_follow_openai_notation() -> None:
    assert param_name(("body", "metadata")) == "metadata"
    assert param_name(("body", "messages", 0, "content")) == "messages[0].content"
    assert param_name(("query", "limit")) == "limit"
    assert param_name(("body", "tools", 1, "function", "function", "name")) == "tools[1].function.name"
    assert param_name(("body",)) is None


def test_param_names_skip_union_branch_labels() -> None:
    assert param_name(("body", "content", "str")) == "content"
    assert (
        param_name(("body", "content", "list[tagged-union[TextPartParam]]", 0, "text")) == "content[0].text"
    )
