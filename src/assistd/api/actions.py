"""/actions: the ``?action=`` function that front ends built on the Assistants API call.

One URL, the action named by a parameter, every answer ``{"success", "data", "error"}``: the shape of the
serverless function those front ends were written against. Every success answers 200, creations too:
the function did, and its front ends test ``res.ok`` or ``status === 200``. GET with side effects is kept
only because they send it; the Bearer key is required as everywhere else.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from ..engine.engine import POLL_WAIT_STATUSES, Engine
from ..errors import AssistdError, ConflictError, InvalidRequestError
from ..llm.registry import ProviderRegistry
from ..protocol.actions import ActionResult, RunReply
from ..protocol.assistants import AssistantCreateParams, AssistantUpdateParams
from ..protocol.common import ParamValueError, unstorable_reason
from ..protocol.messages import Message, MessageCreateParams, TextContent
from ..protocol.runs import Run, RunCreateParams
from ..protocol.threads import ThreadCreateParams
from ..store import assistants as assistant_store
from ..store import messages as message_store
from ..store import runs as run_store
from ..store import threads as thread_store
from ..store.database import Database
from ..store.pagination import PageQuery
from .deps import Db, RunEngine, Tenant

log = logging.getLogger(__name__)

DEFAULT_RUN_TIMEOUT_SECONDS = 120.0
MAX_RUN_TIMEOUT_SECONDS = 600.0

M = TypeVar("M", bound=BaseModel)


def envelope(
    status_code: int, data: Any = None, error: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = ActionResult(success=error is None, data=data, error=error)
    return Response(
        content=body.model_dump_json(),
        media_type="application/json",
        status_code=status_code,
        headers=headers,
    )


class EnvelopeRoute(APIRoute):
    """Renders every error of this router, those of its dependencies (the key) included, as the envelope.

    The app's handlers would answer OpenAI's error body, which the function's clients do not read.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except AssistdError as exc:
                if exc.status_code >= 500:
                    log.error("action failed: %s", exc.message)
                return envelope(exc.status_code, error=exc.message, headers=exc.headers or None)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return envelope(500, error="The server had an error while processing your request.")

        return handle


router = APIRouter(prefix="/actions", tags=["actions"], route_class=EnvelopeRoute)


class Params:
    """The request's parameters: the query string, overlaid by the fields of a JSON body."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    @classmethod
    async def of(cls, request: Request) -> Params:
        values: dict[str, Any] = dict(request.query_params)
        raw = await request.body()
        if raw.strip():
            body: Any = None
            try:
                body = json.loads(raw)
            except ValueError:
                # HTML forms and ``curl -d a=b`` post parameters URL-encoded.
                if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                    body = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            if not isinstance(body, dict):
                raise InvalidRequestError("The request body must be a JSON object of parameters.")
            values.update(body)
        return cls(values)

    def _string(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidRequestError(f"Invalid '{name}': expected a string.", param=name)
        if (reason := unstorable_reason(value)) is not None:
            # NUL (PostgreSQL) or a lone surrogate (UTF-8) cannot be stored: refused on every backend alike.
            raise InvalidRequestError(f"Invalid '{name}': {reason}", param=name)
        return value

    def required(self, name: str) -> str:
        value = self._string(name)
        if value is None or not value.strip():
            raise InvalidRequestError(f"Missing required parameter: '{name}'.", param=name)
        return value

    def optional(self, name: str) -> str | None:
        return self._string(name)

    def given(self, *names: str) -> dict[str, str]:
        """The optional string parameters among ``names`` that the request carries."""
        return {name: value for name in names if (value := self.optional(name)) is not None}

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._values.get(name)
        if value is None or value == "":
            return default
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer past float's range
            number = math.nan
        if not low < number <= high:
            raise InvalidRequestError(
                f"Invalid '{name}': expected a number above {low:g} and at most {high:g}.", param=name
            )
        return number

    def page(self) -> PageQuery:
        limit = self.number("limit", 20, 0, 100)
        if limit != int(limit):
            raise InvalidRequestError("Invalid 'limit': expected an integer from 1 to 100.", param="limit")
        order = self.optional("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequestError("Invalid 'order': expected 'asc' or 'desc'.", param="order")
        order_value: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"
        return PageQuery(
            limit=int(limit),
            order=order_value,
            after=self.optional("after") or None,
            before=self.optional("before") or None,
        )


def build(model: type[M], values: dict[str, Any]) -> M:
    """``model`` from parameters named as its fields, a refusal naming the parameter that failed."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ParamValueError):
            param, reason = cause.param, str(cause)
        else:
            param, reason = ".".join(str(part) for part in error["loc"]), error["msg"]
        raise InvalidRequestError(f"Invalid '{param}': {reason}", param=param) from None


@dataclass(frozen=True)
class Call:
    request: Request
    tenant: str
    db: Database
    engine: Engine
    params: Params


Action = Callable[[Call], Awaitable[Response]]


async def create_assistant(call: Call) -> Response:
    values: dict[str, Any] = call.params.given("name", "instructions", "model")
    if not values.get("model"):
        providers: ProviderRegistry = call.request.app.state.providers
        values["model"] = await providers.require_default_model()
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
        return envelope(
            200, assistant_store.to_wire(await assistant_store.get_row(session, call.tenant, assistant_id))
        )


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


def reply_text(messages: list[Message]) -> str:
    parts = [
        part.text.value
        for message in messages
        if message.role == "assistant"
        for part in message.content
        if isinstance(part, TextContent)
    ]
    return "\n\n".join(parts)


def run_outcome(run: Run, timeout: float) -> tuple[int, str | None]:
    """The HTTP status and error of a run that ``run-assistant`` stopped waiting for."""
    if run.status == "completed":
        return 200, None
    if run.status in POLL_WAIT_STATUSES:
        return 504, (
            f"The run did not finish within {timeout:g} seconds. It goes on; "
            "its reply will appear in list-messages."
        )
    if run.status == "failed":
        reason = f"{run.last_error.message} ({run.last_error.code})" if run.last_error else "unknown error"
        return 502, f"The run failed: {reason}"
    if run.status == "incomplete":
        reason = run.incomplete_details.reason if run.incomplete_details else "unknown reason"
        return 502, f"The run ended incomplete ({reason}); data.response holds the partial reply."
    if run.status == "expired":
        return 504, "The run expired."
    if run.status == "cancelled":
        return 409, "The run was cancelled."
    return 409, f"The run stopped in status '{run.status}'."


async def read_run(call: Call, thread_id: str, run_id: str) -> Run:
    async with call.db.read() as session:
        return run_store.to_wire(await run_store.get_row(session, call.tenant, thread_id, run_id))


async def run_assistant(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    assistant_id = call.params.required("assistantId")
    timeout = call.params.number("timeout", DEFAULT_RUN_TIMEOUT_SECONDS, 0, MAX_RUN_TIMEOUT_SECONDS)
    engine, tenant = call.engine, call.tenant
    # The listener is attached before the run is queued, so no status change can slip past the wait.
    listener = engine.bus.subscription()
    try:
        run = await engine.create_run(tenant, thread_id, RunCreateParams(assistant_id=assistant_id), listener)
        await engine.wait_while(listener, POLL_WAIT_STATUSES, timeout)
    finally:
        listener.close()
    run = await read_run(call, thread_id, run.id)
    calls_function = run.status == "requires_action"
    if calls_function:
        # This function cannot carry tool outputs; left waiting, the run would hold the thread until it
        # expired, refusing every message meanwhile.
        try:
            run = await engine.cancel_run(tenant, thread_id, run.id)
        except ConflictError:
            run = await read_run(call, thread_id, run.id)
    async with call.db.read() as session:
        written = await message_store.list_page(
            session, tenant, thread_id, PageQuery(limit=100, order="asc"), run_id=run.id
        )
    status, error = run_outcome(run, timeout)
    if calls_function:
        status, error = (
            409,
            (
                "The assistant called a function; /actions cannot send tool outputs, so the run was "
                "cancelled. Use /v1 for assistants with function tools."
            ),
        )
    reply = RunReply(
        threadId=thread_id, runId=run.id, status=run.status, response=reply_text(written.data), run=run
    )
    return envelope(status, reply, error)


async def get_thread(call: Call) -> Response:
    thread_id = call.params.required("threadId")
    async with call.db.read() as session:
        return envelope(
            200, thread_store.to_wire(await thread_store.get_row(session, call.tenant, thread_id))
        )


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
async def action(request: Request, tenant: Tenant, db: Db, engine: RunEngine) -> Response:
    params = await Params.of(request)
    name = params.required("action")
    handler = ACTIONS.get(name)
    if handler is None:
        raise InvalidRequestError(
            f"Invalid 'action': unknown action '{name}'. Supported: {', '.join(ACTIONS)}.", param="action"
        )
    return await handler(Call(request, tenant, db, engine, params))
