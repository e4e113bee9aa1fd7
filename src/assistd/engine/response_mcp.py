"""MCP tools in a response's run: the servers' tools offered to the model as functions, and the calls of them
executed by the server, within the run, as file_search's are (``engine/executor.py`` calls this).

What the run's steps hold (``protocol/items.py`` maps each call to its item):

- a listing: a completed ``tool_calls`` step of one call ``{type: "mcp_list_tools", mcp_list_tools:
  {server_label, server_url, tools, listed, error}}`` (``tools`` those ``allowed_tools`` let the model see,
  ``listed`` all), made before the run's first model turn for each server that
  no earlier listing on the thread lists (a chain of responses, or a conversation, lists a server once,
  as OpenAI does; a failed listing is not kept as one);
- a call: ``{type: "mcp", mcp: {server_label, name, arguments, output, error, approval_request_id}}`` in the
  turn's tool_calls step, with what the model was told in the step's ``tool_io`` (read back by the next
  turn's context, as for the built-in tools);
- a call that needs approval: ``{type: "mcp_approval_request", mcp_approval_request: {server_label, name,
  arguments}}``, not run; the run then ends ``completed`` (the response shows the request);
- an approval's answer (the next response's ``mcp_approval_response`` input item): ``{type:
  "mcp_approval_response", mcp_approval_response: {approval_request_id, approve, reason, server_label,
  name, arguments}}`` in a step written with the run (before its first turn, so not in its output); the
  run's first turn then runs the approved call (or tells the model it was refused) as a call step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..errors import InvalidRequestError
from ..protocol.items import McpApprovalInput, McpListingInput, parse_item_id
from ..protocol.response_mcp import allows, needs_approval
from ..store import runs as run_store
from ..store.clock import now
from ..store.database import Database
from ..store.detached import save
from ..store.models import RunRow, RunStepRow
from ..tools import mcp
from .bus import RunBus
from .events import StreamEvent

__all__ = [
    "APPROVAL_REQUEST",
    "CALL",
    "McpOffer",
    "McpOutcome",
    "McpTools",
    "listed_functions",
    "servers_of",
    "write_approvals",
    "write_listings",
]

log = logging.getLogger(__name__)

LISTING = "mcp_list_tools"
CALL = "mcp"
APPROVAL_REQUEST = "mcp_approval_request"
APPROVAL_RESPONSE = "mcp_approval_response"
# The key of a run's mcp tools entry that holds its sealed headers (``tools/mcp.py``'s ``Sealer``).
SEALED = "sealed_headers"


def servers_of(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's MCP servers: its tools entries ``{type: "mcp", mcp: {...}}``."""
    return [tool["mcp"] for tool in tools if tool.get("type") == "mcp" and isinstance(tool.get("mcp"), dict)]


@dataclass(frozen=True)
class Offered:
    server: dict[str, Any]
    tool: dict[str, Any]


@dataclass
class McpOffer:
    """The MCP tools offered to the model on this turn, by function name."""

    tools: dict[str, Offered] = field(default_factory=dict)

    def functions(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": offered.tool.get("description") or "",
                    "parameters": offered.tool.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
            for name, offered in self.tools.items()
        ]

    def add(self, server: dict[str, Any], listing: dict[str, Any]) -> None:
        """Offer the tools of ``server``'s ``listing`` its policy allows (a name taken already is kept)."""
        for tool in listing.get("listed") or listing.get("tools") or []:
            if allows(server, tool["name"], tool.get("annotations")):
                self.tools.setdefault(tool["name"], Offered(server, tool))

    def needs_approval(self, name: str) -> bool:
        offered = self.tools[name]
        return needs_approval(offered.server, name, offered.tool.get("annotations"))


@dataclass
class McpOutcome:
    """A call of an MCP tool: run (``result``), or waiting for approval (``result`` None)."""

    server_label: str
    name: str
    arguments: str
    result: mcp.McpCallResult | None
    approval_request_id: str | None = None
    # As the built-in tools' outcomes: what the step's ``tool_io`` keeps of it.
    sources: dict[int, Any] = field(default_factory=dict)

    @property
    def output(self) -> str:
        """What the model is told."""
        if self.result is None:
            return ""
        if self.result.error is not None:
            return mcp.error_text(self.result.error)
        return self.result.output or ""

    def details(self, call_id: str) -> dict[str, Any]:
        """The call as its step records it."""
        if self.result is None:
            body = {"server_label": self.server_label, "name": self.name, "arguments": self.arguments}
            return {"id": call_id, "type": APPROVAL_REQUEST, APPROVAL_REQUEST: body}
        return {
            "id": call_id,
            "type": CALL,
            CALL: {
                "server_label": self.server_label,
                "name": self.name,
                "arguments": self.arguments,
                "output": self.result.output,
                "error": self.result.error,
                "approval_request_id": self.approval_request_id,
            },
        }


def _delta(step_id: str, calls: list[dict[str, Any]]) -> StreamEvent:
    return StreamEvent(
        "thread.run.step.delta",
        {
            "id": step_id,
            "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": calls}},
        },
    )


def results_delta(index: int, call: dict[str, Any]) -> dict[str, Any]:
    """An MCP call's part of a step's results delta: it is done (the stream reads its item back)."""
    kind = call["type"]
    return {"index": index, "id": call["id"], "type": kind, kind: {**call[kind], "done": True}}


async def _thread_steps(session: AsyncSession, run: RunRow) -> list[RunStepRow]:
    """The tool_calls steps of ``run``'s thread (its own too, when it is not inserted yet), in order."""
    runs = select(RunRow.id).where(RunRow.thread_id == run.thread_id)
    stmt = (
        select(RunStepRow)
        .where(or_(RunStepRow.run_id.in_(runs), RunStepRow.run_id == run.id), RunStepRow.type == "tool_calls")
        .order_by(RunStepRow.pk)
    )
    return list((await session.scalars(stmt)).all())


def _listings(steps: Sequence[RunStepRow]) -> dict[str, dict[str, Any]]:
    """The last listing of each server (by label) the steps hold."""
    listed: dict[str, dict[str, Any]] = {}
    for step in steps:
        for call in step.step_details.get("tool_calls", []):
            # A listing that ended without error (one cut short by a crash has no tools: not one).
            if (
                call.get("type") == LISTING
                and "tools" in call[LISTING]
                and call[LISTING].get("error") is None
            ):
                listed[call[LISTING]["server_label"]] = call[LISTING]
    return listed


async def listed_functions(session: AsyncSession, run: RunRow) -> list[dict[str, Any]]:
    """The functions ``run``'s MCP servers' tools are offered as, for the servers its thread (or the
    history it was given) lists already: no server is contacted (``POST /v1/responses/input_tokens``
    counts them so)."""
    servers = servers_of(run.tools)
    if not servers:
        return []
    listed = _listings(await _thread_steps(session, run))
    offer = McpOffer()
    for server in servers:
        listing = listed.get(server["server_label"])
        if listing is not None and listing.get("server_url") == server["server_url"]:
            offer.add(server, listing)
    own = {tool["function"]["name"] for tool in run.tools if tool.get("type") == "function"}
    return [tool for tool in offer.functions() if tool["function"]["name"] not in own]


class McpTools:
    def __init__(self, settings: Settings, db: Database, bus: RunBus, sealer: mcp.Sealer) -> None:
        self._settings = settings
        self._db = db
        self._bus = bus
        self._sealer = sealer

    def _headers(self, server: dict[str, Any]) -> dict[str, str]:
        sealed = server.get(SEALED)
        return self._sealer.unseal(sealed) if isinstance(sealed, str) else {}

    async def prepare(self, run: RunRow) -> McpOffer | None:
        """Before a model turn of a run with MCP servers: list the servers not listed yet on its thread, run
        the calls an approval answered, and say which tools the model is offered."""
        servers = servers_of(run.tools)
        if not servers:
            return None
        async with self._db.read() as session:
            steps = await _thread_steps(session, run)
        listed = _listings(steps)
        answered: list[dict[str, Any]] = []
        done: set[str] = set()
        for step in steps:
            for call in step.step_details.get("tool_calls", []):
                kind = call.get("type")
                if step.run_id == run.id and kind == APPROVAL_RESPONSE:
                    answered.append(call)
                elif step.run_id == run.id and kind == CALL and call[CALL].get("approval_request_id"):
                    done.add(call[CALL]["approval_request_id"])
        offer = McpOffer()
        for server in servers:
            listing = listed.get(server["server_label"])
            if listing is None or listing.get("server_url") != server["server_url"]:
                listing = await self._list(run, server)
            offer.add(server, listing)
        pending = [call for call in answered if call[APPROVAL_RESPONSE]["approval_request_id"] not in done]
        if pending:
            await self._run_answered(run, servers, pending)
        return offer

    async def _list(self, run: RunRow, server: dict[str, Any]) -> dict[str, Any]:
        """List ``server``'s tools into a step of ``run`` (its events streamed as it goes)."""
        call_id = "mcpl"
        body: dict[str, Any] = {"server_label": server["server_label"], "server_url": server["server_url"]}
        step = run_store.new_step_row(
            run,
            "tool_calls",
            {"type": "tool_calls", "tool_calls": [{"id": call_id, "type": LISTING, LISTING: {}}]},
        )
        async with self._db.write() as session:
            session.add(step)
            await session.flush()
        wire = run_store.step_to_wire(step)
        self._bus.soon(
            run.id,
            StreamEvent("thread.run.step.created", wire),
            StreamEvent("thread.run.step.in_progress", wire),
            _delta(
                step.id,
                [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": LISTING,
                        LISTING: {"server_label": body["server_label"]},
                    }
                ],
            ),
        )
        try:
            address = await mcp.check_host(server["server_url"], self._settings.mcp_allowed_host_list)
            tools = await mcp.list_tools(
                server["server_url"], self._headers(server), self._settings.mcp_timeout_seconds, address
            )
            shown = [tool.shown() for tool in tools]
            # The item shows the tools the request allows; all are kept for a later request that allows more.
            allowed = [tool for tool in shown if allows(server, tool["name"], tool.get("annotations"))]
            body.update(tools=allowed, listed=shown, error=None)
        except mcp.McpError as exc:
            log.info("run %s: listing MCP server %s failed: %s", run.id, server["server_label"], exc.message)
            body.update(tools=[], error=exc.message)
        call = {"id": call_id, "type": LISTING, LISTING: body}
        step.step_details = {"type": "tool_calls", "tool_calls": [call]}
        step.status, step.completed_at = "completed", now()
        async with self._db.write() as session:
            await save(session, step, "step_details", "status", "completed_at")
        self._bus.soon(
            run.id,
            _delta(step.id, [results_delta(0, call)]),
            StreamEvent("thread.run.step.completed", run_store.step_to_wire(step)),
        )
        return body

    async def call(self, run: RunRow, offer: McpOffer, name: str, arguments: str) -> McpOutcome:
        """The model's call of ``name``: run, or left waiting for approval."""
        server = offer.tools[name].server
        if offer.needs_approval(name):
            return McpOutcome(server["server_label"], name, arguments, None)
        return McpOutcome(server["server_label"], name, arguments, await self._call(server, name, arguments))

    async def _call(self, server: dict[str, Any], name: str, arguments: str) -> mcp.McpCallResult:
        try:
            address = await mcp.check_host(server["server_url"], self._settings.mcp_allowed_host_list)
        except mcp.McpError as exc:
            return mcp.McpCallResult(None, exc.error)
        seconds = self._settings.mcp_timeout_seconds
        return await mcp.call_tool(
            server["server_url"], self._headers(server), name, arguments, seconds, address
        )

    async def _run_answered(
        self, run: RunRow, servers: list[dict[str, Any]], answered: list[dict[str, Any]]
    ) -> None:
        """Run the calls the approvals answered (a refused one is not run: the model is told so), as a
        completed step of ``run`` the model's context reads as its own call and its output."""
        by_label = {server["server_label"]: server for server in servers}
        calls: list[dict[str, Any]] = []
        io: dict[str, Any] = {}
        for answer in answered:
            body = answer[APPROVAL_RESPONSE]
            server = by_label.get(body["server_label"])
            if not body["approve"]:
                why = f" ({body['reason']})" if body.get("reason") else ""
                text = f"The user did not approve this call{why}: it was not run."
                result = mcp.McpCallResult(
                    None, {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": text}]}
                )
            elif server is None:
                message = f"The MCP server '{body['server_label']}' is not among this response's tools."
                result = mcp.McpCallResult(None, mcp.McpError(message).error)
            else:
                result = await self._call(server, body["name"], body["arguments"])
            outcome = McpOutcome(
                body["server_label"], body["name"], body["arguments"], result, body["approval_request_id"]
            )
            calls.append(outcome.details(answer["id"]))
            io[answer["id"]] = {
                "name": body["name"],
                "arguments": body["arguments"],
                "output": outcome.output,
                "sources": {},
            }
        step = run_store.new_step_row(run, "tool_calls", {"type": "tool_calls", "tool_calls": calls})
        step.status, step.completed_at, step.tool_io = "completed", now(), io
        async with self._db.write() as session:
            session.add(step)
        wire = run_store.step_to_wire(step)
        opened = [
            {
                "index": n,
                "id": call["id"],
                "type": CALL,
                CALL: {k: call[CALL][k] for k in ("arguments", "name", "server_label")},
            }
            for n, call in enumerate(calls)
        ]
        self._bus.soon(
            run.id,
            StreamEvent("thread.run.step.created", wire),
            StreamEvent("thread.run.step.in_progress", wire),
            _delta(step.id, opened),
            _delta(step.id, [results_delta(n, call) for n, call in enumerate(calls)]),
            StreamEvent("thread.run.step.completed", wire),
        )


async def write_listings(session: AsyncSession, run: RunRow, listings: Sequence[McpListingInput]) -> int:
    """Keep the ``mcp_list_tools`` items a stateless history sends back as listings of ``run`` (not yet
    inserted), as OpenAI does: a completed step, before its first turn, for each of the run's servers a
    listing names (the last one given of each), so that the server is not listed again; the number of steps
    written. A listing of a server the request does not name is let be (it would not be used)."""
    servers = {server["server_label"]: server for server in servers_of(run.tools)}
    kept = {listing.server_label: listing for listing in listings if listing.server_label in servers}
    if not kept:
        return 0
    calls = [
        {
            "id": "mcpl",
            "type": LISTING,
            LISTING: {
                "server_label": label,
                "server_url": servers[label]["server_url"],
                "tools": listing.tools,
                "listed": listing.tools,
                "error": None,
            },
        }
        for label, listing in kept.items()
    ]
    step = run_store.new_step_row(run, "tool_calls", {"type": "tool_calls", "tool_calls": calls})
    step.status, step.completed_at = "completed", now()
    session.add(step)
    await session.flush()
    return 1


async def write_approvals(
    session: AsyncSession, tenant: str, run: RunRow, approvals: Sequence[McpApprovalInput]
) -> int:
    """Write the answers of a request's ``mcp_approval_response`` items into ``run`` (not yet inserted) as
    a completed step, for its first turn to run (``McpTools.prepare``); the number of steps written. An
    answer to no approval request of the tenant's is a 400 naming its ``approval_request_id``."""
    if not approvals:
        return 0
    calls = []
    for approval in approvals:
        ref = parse_item_id(approval.approval_request_id)
        found: dict[str, Any] | None = None
        if ref is not None and ref.kind == APPROVAL_REQUEST:
            step = await session.scalar(
                select(RunStepRow).where(RunStepRow.id == ref.step_id, RunStepRow.tenant == tenant)
            )
            tool_calls = step.step_details.get("tool_calls", []) if step is not None else []
            if ref.index < len(tool_calls) and tool_calls[ref.index].get("type") == APPROVAL_REQUEST:
                found = tool_calls[ref.index]
        if found is None:
            raise InvalidRequestError(
                f"No MCP approval request found with id '{approval.approval_request_id}'.",
                param=f"{approval.at}.approval_request_id",
            )
        body = {
            **found[APPROVAL_REQUEST],
            "approval_request_id": approval.approval_request_id,
            "approve": approval.approve,
            "reason": approval.reason,
        }
        calls.append({"id": found["id"], "type": APPROVAL_RESPONSE, APPROVAL_RESPONSE: body})
    step = run_store.new_step_row(run, "tool_calls", {"type": "tool_calls", "tool_calls": calls})
    step.status, step.completed_at = "completed", now()
    session.add(step)
    await session.flush()
    return 1
