"""A response's built-in tools as its run's tools entries, echoed as OpenAI shows them, and refused naming
the parameter; the run's bound on built-in calls."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import Tool
from pydantic import TypeAdapter, ValidationError

from assistd.engine.response_tools import run_tools
from assistd.protocol.common import ParamValueError, Tools
from assistd.protocol.responses import ResponseCreateParams
from assistd.store.runs import container_of
from assistd.tools.limits import max_tool_calls

TOOL: TypeAdapter[Any] = TypeAdapter(Tool)
FILTER = {"type": "and", "filters": [{"type": "eq", "key": "kind", "value": "farm"}]}


def _params(**body: Any) -> ResponseCreateParams:
    return ResponseCreateParams.model_validate({"model": "m", "input": "Hi", **body})


def test_run_tools_carry_the_request_resources_and_the_bound() -> None:
    params = _params(
        tools=[
            {
                "type": "file_search",
                "vector_store_ids": ["vs_a", "vs_b"],
                "max_num_results": 4,
                "filters": FILTER,
                "ranking_options": {"ranker": "default-2024-11-15", "score_threshold": 0.25},
            },
            {"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-1"]}},
        ],
        max_tool_calls=3,
    )
    assert run_tools(params) == [
        {
            "type": "file_search",
            "file_search": {
                "vector_store_ids": ["vs_a", "vs_b"],
                "max_num_results": 4,
                "ranking_options": {"ranker": "auto", "score_threshold": 0.25},
                "filters": FILTER,
            },
            "max_tool_calls": 3,
        },
        {"type": "code_interpreter", "code_interpreter": {"file_ids": ["file-1"]}, "max_tool_calls": 3},
    ]
    assert max_tool_calls(run_tools(params)) == 3
    assert max_tool_calls([{"type": "file_search"}]) is None


def test_run_tools_show_as_assistants_tools_without_the_extra_keys() -> None:
    params = _params(tools=[{"type": "file_search", "vector_store_ids": ["vs_a"]}], max_tool_calls=2)
    # As a run's wire object shows its tools (``protocol.common.Tools``).
    shown = TypeAdapter(Tools).dump_python(TypeAdapter(Tools).validate_python(run_tools(params)), mode="json")
    assert shown == [{"type": "file_search", "file_search": {}}]


def test_container_of_a_run() -> None:
    auto = run_tools(_params(tools=[{"type": "code_interpreter", "container": "auto"}]))
    named = run_tools(_params(tools=[{"type": "code_interpreter", "container": "conv_abc"}]))
    assert container_of(auto, "thread_1") == "thread_1"
    assert container_of(named, "thread_1") == "conv_abc"
    assert container_of(None, "thread_1") == "thread_1"


def test_echoed_tools_are_openai_tools() -> None:
    params = _params(
        tools=[
            {"type": "file_search", "vector_store_ids": ["vs_a"], "filters": FILTER},
            {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "1g"}},
            {"type": "code_interpreter", "container": "conv_abc"},
        ]
    )
    echoed = params.echoed()["tools"]
    assert echoed[0] == {
        "type": "file_search",
        "vector_store_ids": ["vs_a"],
        "filters": FILTER,
        "max_num_results": 20,
        "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
    }
    assert echoed[1:] == [
        {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "1g"}},
        {"type": "code_interpreter", "container": "conv_abc"},
    ]
    for tool in echoed:
        TOOL.validate_python(tool)


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "file_search"}, "tools[1].vector_store_ids"),
        ({"type": "file_search", "vector_store_ids": []}, "tools[1].vector_store_ids"),
        (
            {"type": "file_search", "vector_store_ids": ["v"], "max_num_results": 0},
            "tools[1].max_num_results",
        ),
        (
            {"type": "file_search", "vector_store_ids": ["v"], "ranking_options": {"hybrid_search": {}}},
            "tools[1].ranking_options.hybrid_search",
        ),
        (
            {
                "type": "file_search",
                "vector_store_ids": ["v"],
                "filters": {"type": "and", "filters": [{"type": "eq"}]},
            },
            "tools[1].filters.filters[0].key",
        ),
        ({"type": "code_interpreter", "container": {"type": "big"}}, "tools[1].container.type"),
        (
            {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [1]}},
            "tools[1].container.file_ids[0]",
        ),
    ],
)
def test_refusals_name_the_parameter(tool: dict[str, Any], param: str) -> None:
    valid = {"type": "code_interpreter", "container": "auto"}
    with pytest.raises(ValidationError) as caught:
        _params(tools=[valid, tool])
    cause = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, ParamValueError) and cause.param == param
