"""Assistants as prompts: ``POST /v1/responses`` with ``prompt: {id: "asst_...", variables}``.

OpenAI's reusable prompts are templates of a model, instructions with ``{{variable}}`` placeholders, tools and
options. assistd's assistant is all of that already, so a prompt is an assistant: the response's run is the
assistant's run (its ``assistant_id`` set, so the engine reads its tools and tool resources as for any run of
the assistant), with the instructions filled from the prompt's variables. What the request itself gives
(``model``, ``instructions``, ``tools``, ``temperature``, ``top_p``, ``text.format``, ``reasoning``) wins over
the assistant's, as a request's parameters win over a prompt's on OpenAI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError, NotFoundError
from ..protocol.responses import PromptParam, ResponseCreateParams
from ..store import assistants as assistant_store
from ..store.models import AssistantRow, RunRow

__all__ = ["Prompted", "apply", "base_instructions", "echoed", "fill", "resolve", "response_tools"]

# ``{{name}}``, spaces inside the braces allowed, as OpenAI's prompt editor writes them.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


@dataclass(frozen=True)
class Prompted:
    """A request's prompt resolved: the assistant it names and its instructions with the variables in."""

    assistant: AssistantRow
    instructions: str
    # What the response shows as its ``prompt``.
    echo: dict[str, Any]


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{{name}}`` replaced by ``values[name]``.

    Every placeholder needs a value and every value a placeholder (a 400 naming ``prompt.variables``):
    a placeholder left in, or a value that goes nowhere, is a request the model would answer wrongly.
    """
    named = {match.group(1) for match in _PLACEHOLDER.finditer(template)}
    missing = sorted(named - set(values))
    if missing:
        raise InvalidRequestError(
            f"Missing prompt variables: {', '.join(missing)}.", param="prompt.variables"
        )
    unknown = sorted(set(values) - named)
    if unknown:
        raise InvalidRequestError(
            f"Unknown prompt variables: {', '.join(unknown)} (the prompt's instructions have no such "
            "placeholder).",
            param=f"prompt.variables.{unknown[0]}",
        )
    # One pass: a value holding ``{{...}}`` is text, not a placeholder to fill again.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


async def resolve(session: AsyncSession, tenant: str, prompt: PromptParam) -> Prompted:
    """The tenant's assistant ``prompt.id`` (another tenant's is not found) with its instructions filled."""
    try:
        assistant = await assistant_store.read_row(session, tenant, prompt.id)
    except NotFoundError:
        raise NotFoundError(f"Prompt with id '{prompt.id}' not found.", param="prompt.id") from None
    echo = {"id": prompt.id, "variables": prompt.variables, "version": prompt.version}
    return Prompted(assistant, fill(assistant.instructions or "", prompt.values()), echo)


def base_instructions(params: ResponseCreateParams, prompted: Prompted | None) -> str | None:
    """The instructions the run starts from: the request's, else the prompt's."""
    if params.instructions is not None or prompted is None:
        return params.instructions
    return prompted.instructions


def apply(run: RunRow, params: ResponseCreateParams, prompted: Prompted) -> None:
    """Make the response's ``run`` the assistant's run: its options where the request left them out."""
    assistant = prompted.assistant
    run.assistant_id = assistant.id
    if params.model is None:
        run.model = assistant.model
    if not params.tools:
        run.tools = assistant.tools
    if params.temperature is None:
        run.temperature = assistant.temperature
    if params.top_p is None:
        run.top_p = assistant.top_p
    if params.text is None or params.text.format is None:
        run.response_format = assistant.response_format or "auto"
    if params.reasoning is None or params.reasoning.effort is None:
        run.reasoning_effort = assistant.reasoning_effort


def echoed(
    echo: dict[str, Any], run: RunRow, params: ResponseCreateParams, prompted: Prompted
) -> dict[str, Any]:
    """The response's echoed options (``params.echoed()``) as the prompt made them."""
    shown = {
        **echo,
        "model": run.model,
        "instructions": base_instructions(params, prompted),
        "temperature": run.temperature,
        "top_p": run.top_p,
        "prompt": prompted.echo,
    }
    if not params.tools:
        shown["tools"] = response_tools(prompted.assistant)
    if params.text is None or params.text.format is None:
        shown["text"] = {**echo["text"], "format": _text_format(run.response_format)}
    if (params.reasoning is None or params.reasoning.effort is None) and run.reasoning_effort is not None:
        shown["reasoning"] = {**(echo["reasoning"] or {"summary": None}), "effort": run.reasoning_effort}
    return shown


def _text_format(response_format: Any) -> dict[str, Any]:
    """A run's ``response_format`` as a response's ``text.format``."""
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema") or {}
        shown = {"type": "json_schema", "name": schema.get("name"), "schema": schema.get("schema") or {}}
        for key in ("description", "strict"):
            if schema.get(key) is not None:
                shown[key] = schema[key]
        return shown
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return {"type": "json_object"}
    return {"type": "text"}


def response_tools(assistant: AssistantRow) -> list[dict[str, Any]]:
    """The assistant's tools as a response shows tools (OpenAI's Responses ``Tool`` shapes)."""
    resources = assistant.tool_resources or {}
    shown: list[dict[str, Any]] = []
    for tool in assistant.tools or []:
        kind = tool.get("type")
        if kind == "function":
            function = tool.get("function") or {}
            shown.append(
                {
                    "type": "function",
                    "name": function.get("name"),
                    "description": function.get("description"),
                    "parameters": function.get("parameters"),
                    "strict": function.get("strict"),
                }
            )
        elif kind == "file_search":
            entry: dict[str, Any] = {
                "type": "file_search",
                "vector_store_ids": list((resources.get("file_search") or {}).get("vector_store_ids") or []),
            }
            limit = (tool.get("file_search") or {}).get("max_num_results")
            if limit is not None:
                entry["max_num_results"] = limit
            shown.append(entry)
        elif kind == "code_interpreter":
            files = list((resources.get("code_interpreter") or {}).get("file_ids") or [])
            shown.append({"type": "code_interpreter", "container": {"type": "auto", "file_ids": files}})
    return shown
