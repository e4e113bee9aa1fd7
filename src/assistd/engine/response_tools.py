"""The built-in tools of a response (``file_search``, ``code_interpreter``) as its run's tools, and a
response's output items read from its run's steps.

The Responses API names a tool's resources per request (``vector_store_ids``, a container's ``file_ids``),
where the Assistants API names them on the assistant and the thread. They ride in the run's own tools entry,
beside the options the Assistants API has there, under keys its wire models do not show::

    {"type": "file_search", "file_search": {"max_num_results", "ranking_options",
                                            "vector_store_ids", "filters"}, "max_tool_calls"}
    {"type": "code_interpreter", "code_interpreter": {"file_ids", "container_id"}, "max_tool_calls"}
    {"type": "mcp", "mcp": {"server_label", "server_url", "allowed_tools", "require_approval",
                            "sealed_headers"}, "max_tool_calls"}

An MCP server's ``headers`` are kept sealed (``tools/mcp.py``'s ``Sealer``): the process that executes the run
opens them, the database never holds them in clear.

``store.runs.tool_resource_ids`` reads the ids there first, so the engine's one file_search and one
code_interpreter run them as every run's: there is no second dispatch. ``max_tool_calls`` is a run-level
bound kept on each built-in entry for want of a column of the run (``tools.limits.max_tool_calls``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..protocol.items import message_to_item, step_to_items
from ..protocol.messages import Message
from ..protocol.responses import (
    FileSearchToolParam,
    ResponseCreateParams,
    output_item,
)
from ..store import references
from ..store import runs as run_store
from ..store import threads as thread_store
from ..store.models import RunStepRow
from ..tools.limits import MAX_TOOL_CALLS
from ..tools.mcp import Sealer
from .response_mcp import SEALED

__all__ = ["check_builtin_tools", "output_items", "run_tools"]


async def check_builtin_tools(session: AsyncSession, tenant: str, params: ResponseCreateParams) -> None:
    """Every vector store, file and container the built-in tools name is the tenant's: else a refusal
    naming it (``tools[0].vector_store_ids[1]``), before anything of the response is written."""
    for index, tool in params.builtin_tools:
        at = f"tools[{index}]"
        if isinstance(tool, FileSearchToolParam):
            named = references.indexed(tool.vector_store_ids, f"{at}.vector_store_ids")
            await references.require_vector_stores(session, tenant, named)
            continue
        await references.require_files(
            session, tenant, references.indexed(tool.file_ids, f"{at}.container.file_ids")
        )
        if tool.container_id is not None:
            try:
                await thread_store.read_row(session, tenant, tool.container_id)
            except NotFoundError:
                raise NotFoundError(
                    f"No container found with id '{tool.container_id}'.", param=f"{at}.container"
                ) from None


def run_tools(params: ResponseCreateParams, sealer: Sealer | None = None) -> list[dict[str, Any]]:
    """The run's tools entries: the response's functions (``protocol/response_functions.py``), then its
    built-in tools and MCP servers (see the module's docstring)."""
    entries: list[dict[str, Any]] = [function.for_run() for function in params.functions()]
    for _, server in params.mcp_tools:
        headers = server.secret_headers()
        if headers and sealer is None:
            raise ValueError("an MCP server's headers are stored sealed: a sealer is needed")
        policy = {**server.policy(), SEALED: sealer.seal(headers) if headers and sealer else None}
        mcp_entry: dict[str, Any] = {"type": "mcp", "mcp": policy}
        if params.max_tool_calls is not None:
            mcp_entry[MAX_TOOL_CALLS] = params.max_tool_calls
        entries.append(mcp_entry)
    for _, tool in params.builtin_tools:
        if isinstance(tool, FileSearchToolParam):
            options: dict[str, Any] = {"vector_store_ids": list(tool.vector_store_ids)}
            if tool.max_num_results is not None:
                options["max_num_results"] = tool.max_num_results
            if tool.ranking_options is not None:
                # assistd has one ranker; the Assistants name of it is what its run step shows.
                options["ranking_options"] = {
                    "ranker": "auto",
                    "score_threshold": tool.ranking_options.score_threshold or 0.0,
                }
            if tool.filters is not None:
                options["filters"] = tool.filters.model_dump()
            entry: dict[str, Any] = {"type": "file_search", "file_search": options}
        else:
            code: dict[str, Any] = {"file_ids": tool.file_ids}
            if tool.container_id is not None:
                code["container_id"] = tool.container_id
            entry = {"type": "code_interpreter", "code_interpreter": code}
        if params.max_tool_calls is not None:
            entry[MAX_TOOL_CALLS] = params.max_tool_calls
        entries.append(entry)
    return entries


def output_items(
    steps: Sequence[RunStepRow],
    written: Sequence[Message],
    include: Collection[str],
    container_id: str,
) -> list[dict[str, Any]]:
    """A response's output: its run's steps in order, a tool_calls step as its call items
    (``protocol.items.step_to_items``), a message_creation step as its message; messages no step names
    (none, as runs write them) follow."""
    messages = {message.id: message for message in written}
    items: list[dict[str, Any]] = []
    placed: set[str] = set()
    for step in steps:
        if step.type == "message_creation":
            message_id = step.step_details["message_creation"]["message_id"]
            if message_id in messages and message_id not in placed:
                placed.add(message_id)
                items.append(output_item(message_to_item(messages[message_id])))
            continue
        wire = run_store.step_to_wire(step, include_file_search_content=True)
        items += step_to_items(wire, tool_io=step.tool_io, include=include, container_id=container_id)
    items += [output_item(message_to_item(m)) for m in written if m.id not in placed]
    return items
