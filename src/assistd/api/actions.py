"""/actions: the ``?action=`` function that front ends built on the Assistants API call.

One URL, the action named by a parameter, every answer ``{"success", "data", "error"}``: the shape of the
serverless function those front ends were written against. Every success answers 200, creations too:
the function did, and its front ends test ``res.ok`` or ``status === 200``. GET with side effects is kept
only because they send it; the Bearer key is required as everywhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from ..engine.engine import Engine
from ..engine.turns import TurnOutcome, start_turn
from ..errors import InvalidRequestError
from ..llm.registry import ProviderRegistry
from ..protocol.actions import RunReply
from ..protocol.assistants import AssistantCreateParams, AssistantUpdateParams
from ..protocol.messages import MessageCreateParams
from ..protocol.threads import ThreadCreateParams
from ..store import assistants as assistant_store
from ..store import messages as message_store
from ..store import threads as thread_store
from ..store.database import Database
from .action_params import Params, build
from .deps import Db, Providers, RunEngine, Tenant
from .envelope import EnvelopeRoute, envelope

DEFAULT_RUN_TIMEOUT_SECONDS = 120.0
MAX_RUN_TIMEOUT_SECONDS = 600.0


router = APIRouter(prefix="/actions", tags=["actions"], route_class=EnvelopeRoute)


@dataclass(frozen=True)
class Call:
    tenant: str
    db: Database
    engine: Engine
    providers: ProviderRegistry
    params: Params


async def create_assistant(call: Call) -> Response:
    values: dict[str, Any] = call.params.given("name", "instructions", "model")
    if not values.get("model"):
        values["model"] = await call.providers.require_default_model()
    params = build(AssistantCreateParams, values)
    async with call.db.write() as session:
        return envelope(200, await assistant_store.create(session, call.tenant, params))


async def list_assistants(call: Call) -> Response:
    query = call.params.page()
    async with call.db.read() as session:
        return envelope(200, await assistant_store.list_page(session, call.tenant, query))


async def get_assistant(call: Call) -> Response:
    assistant_id = call.params.required("assistantId")
    async with call.db.read() as session:
        row = await assistant_store.get_row(session, call.tenant, assistant_id)
        return envelope(200, assistant_store.to_wire(row))


async def update_assistant(call: Call) -> Response:
    assistant_id = call.params.required("assistantId")
    params = build(AssistantUpdateParams, call.params.given("name", "instructions"))
    async with call.db.write() as session:
        return envelope(200, await assistant_store.update(session, call.tenant, assistant_id, params))


async def create_thread(call: Call) -> Response:
    async with call.db.write() as session:
        return envelope(200, await thread_store.create(session, call.tenant, ThreadCreateParams()))


async def send_message(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    text = call.params.required("message")
    params = build(MessageCreateParams, {"role": "user", "content": text})
    async with call.db.write() as session:
        thread = await thread_store.get_row(session, call.tenant, thread_id)
        await thread_store.ensure_no_active_run(session, thread)
        row = await message_store.insert(session, call.tenant, thread.id, params)
        return envelope(200, message_store.to_wire(row))


def reply_status(outcome: TurnOutcome, timeout: float) -> tuple[int, str | None]:
    """The HTTP status and error of a run that ``run-assistant`` stopped waiting for."""
    match outcome.status:
        case "completed":
            return 200, None
        case "timeout":
            return 504, (
                f"The run did not finish within {timeout:g} seconds. It goes on; "
                "its reply will appear in list-messages."
            )
        case "failed":
            error = outcome.error
            return 502, f"The run failed: {f'{error.message} ({error.code})' if error else 'unknown error'}"
        case "incomplete":
            reason = outcome.incomplete_reason or "unknown reason"
            return 502, f"The run ended incomplete ({reason}); data.response holds the partial reply."
        case "expired":
            return 504, "The run expired."
        case "cancelled":
            return 409, "The run was cancelled."
        case "requires_action":
            return 409, (
                "The assistant called a function; /actions cannot send tool outputs, so the run was "
                "cancelled. Use /v1 for assistants with function tools."
            )


async def run_assistant(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    assistant_id = call.params.required("assistantId")
    timeout = call.params.number("timeout", DEFAULT_RUN_TIMEOUT_SECONDS, 0, MAX_RUN_TIMEOUT_SECONDS)
    turn = await start_turn(call.engine, call.tenant, thread_id, assistant_id, time_limit=timeout)
    try:
        outcome = await turn.wait()
    finally:
        turn.close()
    run = outcome.run
    if outcome.status == "requires_action":
        # This function cannot carry tool outputs; left waiting, the run would hold the thread until it
        # expired, refusing every message meanwhile.
        run = await turn.cancel()
    status, error = reply_status(outcome, timeout)
    reply = RunReply(threadId=thread_id, runId=run.id, status=run.status, response=outcome.text, run=run)
    return envelope(status, reply, error)


async def get_thread(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    async with call.db.read() as session:
        row = await thread_store.get_row(session, call.tenant, thread_id)
        return envelope(200, thread_store.to_wire(row))


async def list_messages(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    query = call.params.page()
    async with call.db.read() as session:
        await thread_store.get_row(session, call.tenant, thread_id)
        return envelope(200, await message_store.list_page(session, call.tenant, thread_id, query))


async def delete_thread(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    async with call.db.write() as session:
        return envelope(200, await thread_store.remove(session, call.tenant, thread_id))


Action = Callable[[Call], Awaitable[Response]]
ACTIONS: dict[str, Action] = {
    "create-assistant": create_assistant,
    "list-assistants": list_assistants,
    "get-assistant": get_assistant,
    "update-assistant": update_assistant,
    "create-thread": create_thread,
    "send-message": send_message,
    "run-assistant": run_assistant,
    "get-thread": get_thread,
    "list-messages": list_messages,
    "delete-thread": delete_thread,
}


@router.get("", operation_id="actions_get")
@router.post("", operation_id="actions_post")
async def action(
    request: Request, tenant: Tenant, db: Db, engine: RunEngine, providers: Providers
) -> Response:
    params = await Params.of(request)
    name = params.required("action")
    handler = ACTIONS.get(name)
    if handler is None:
        raise InvalidRequestError(
            f"Invalid 'action': unknown action '{name}'. Supported: {', '.join(ACTIONS)}.", param="action"
        )
    return await handler(Call(tenant, db, engine, providers, params))
