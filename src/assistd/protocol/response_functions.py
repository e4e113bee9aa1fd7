"""Function tools of the Responses API (``tools: [{"type": "function", ...}]``) and what a run makes of them.

The Responses API names a function at the top of its tool (``{type, name, description, parameters,
strict}``); the Assistants API, whose runs execute it, nests it (``{type, function: {...}}``). The run is
given its tools and ``tool_choice`` in the Assistants shape, and the response echoes them in its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, ValidationError

from .common import ParamValueError, RequestModel

__all__ = ["FunctionToolParam", "function_tools", "run_tool_choice"]


class FunctionToolParam(RequestModel):
    type: Literal["function"]
    # OpenAI's bounds for a function's name, as the Assistants API's.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(default=None, max_length=1024)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def echoed(self) -> dict[str, Any]:
        """As the response's ``tools`` shows it (OpenAI's ``FunctionTool``)."""
        shown: dict[str, Any] = {
            "type": "function",
            "name": self.name,
            "parameters": self.parameters,
            "strict": self.strict,
        }
        if self.description is not None:
            shown["description"] = self.description
        return shown

    def for_run(self) -> dict[str, Any]:
        """As the run's ``tools`` holds it (the Assistants API's ``FunctionTool``)."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        if self.parameters is not None:
            function["parameters"] = self.parameters
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


def _param(loc: Sequence[int | str]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def function_tools(tools: Sequence[dict[str, Any]], tool_choice: Any) -> list[FunctionToolParam]:
    """The ``function`` entries of ``tools``, checked; a ``tool_choice`` naming a function must name one of
    them. Raises ``ParamValueError`` naming the offending parameter (``tools[1].name``, ``tool_choice``)."""
    functions = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            continue
        try:
            functions.append(FunctionToolParam.model_validate(tool))
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ParamValueError(str(error["msg"]), f"tools[{index}]{_param(error['loc'])}") from None
    names = [function.name for function in functions]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise ParamValueError(f"function names must be unique; '{duplicate}' is given twice.", "tools")
    chosen = getattr(tool_choice, "name", None)
    if getattr(tool_choice, "type", None) == "function" and chosen not in names:
        raise ParamValueError(f"Tool choice '{chosen}' not found in 'tools' parameter.", "tool_choice")
    return functions


def run_tool_choice(tool_choice: Any) -> str | dict[str, Any]:
    """The run's ``tool_choice`` for the request's (default ``auto``; a named function in the Assistants
    shape)."""
    if tool_choice is None:
        return "auto"
    if isinstance(tool_choice, str):
        return tool_choice
    return {"type": "function", "function": {"name": tool_choice.name}}
