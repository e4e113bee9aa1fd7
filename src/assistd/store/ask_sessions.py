"""Sessions of the /ask service: a client's session id, per tenant, mapped to a thread and an assistant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..protocol.ask import AskMessage, AskSession, AskSessionDetail
from ..protocol.assistants import AssistantCreateParams
from ..protocol.common import DeletedObject, ListPage
from ..protocol.threads import ThreadCreateParams
from . import assistants, messages, threads
from .clock import now
from .database import Database
from .models import AskDefaultRow, AskSessionRow, AssistantRow
from .pagination import PageQuery, fetch_page, page_of


def to_wire(row: AskSessionRow) -> AskSession:
    return AskSession(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        thread_id=row.thread_id,
        assistant_id=row.assistant_id,
    )


async def find(session: AsyncSession, tenant: str, session_id: str) -> AskSessionRow | None:
    return await session.scalar(
        select(AskSessionRow).where(AskSessionRow.tenant == tenant, AskSessionRow.id == session_id)
    )


async def get_row(session: AsyncSession, tenant: str, session_id: str) -> AskSessionRow:
    row = await find(session, tenant, session_id)
    if row is None:
        raise NotFoundError(f"No session found with id '{session_id}'.", param="session_id")
    return row


def new_row(tenant: str, session_id: str, thread_id: str, assistant_id: str) -> AskSessionRow:
    created = now()
    return AskSessionRow(
        id=session_id,
        tenant=tenant,
        thread_id=thread_id,
        assistant_id=assistant_id,
        created_at=created,
        updated_at=created,
    )


async def open_thread(db: Database, tenant: str, session_id: str, assistant_id: str) -> str:
    """The session's thread: made on its first turn (or again if its thread was deleted), with the session
    then made or updated to name it and ``assistant_id``, the assistant of this turn."""
    try:
        async with db.write() as session:
            row = await find(session, tenant, session_id)
            if row is not None and await threads.exists(session, row.thread_id):
                row.assistant_id, row.updated_at = assistant_id, now()
                return row.thread_id
            metadata = {"ask_session_id": session_id}
            thread = await threads.create(session, tenant, ThreadCreateParams(metadata=metadata))
            if row is None:
                session.add(new_row(tenant, session_id, thread.id, assistant_id))
            else:
                row.thread_id, row.assistant_id, row.updated_at = thread.id, assistant_id, now()
            await session.flush()
            return thread.id
    except IntegrityError:
        # Another process opened the same session at the same moment: continue its thread.
        async with db.read() as session:
            return (await get_row(session, tenant, session_id)).thread_id


async def detail(session: AsyncSession, row: AskSessionRow) -> AskSessionDetail:
    history = await messages.history(session, row.thread_id)
    return AskSessionDetail(
        **to_wire(row).model_dump(),
        messages=[
            AskMessage(
                id=message.id,
                role="assistant" if message.role == "assistant" else "user",
                content=messages.text_of(message),
                created_at=message.created_at,
                run_id=message.run_id,
            )
            for message in history
        ],
    )


async def remove(session: AsyncSession, row: AskSessionRow) -> DeletedObject:
    await session.execute(delete(AskSessionRow).where(AskSessionRow.pk == row.pk))
    return DeletedObject(id=row.id, object="ask.session.deleted")


async def list_page(session: AsyncSession, tenant: str, query: PageQuery) -> ListPage[AskSession]:
    rows, has_more = await fetch_page(session, AskSessionRow, [AskSessionRow.tenant == tenant], query)
    return page_of([to_wire(row) for row in rows], has_more)


# Which assistant answers ------------------------------------------------------------------------

ALLOWED_KEYS = "ask_allowed_keys"


def usable_by(row: AssistantRow, key_fingerprint: str | None) -> bool:
    """Whether /ask may use ``row`` for the key: a private assistant lists the fingerprints allowed."""
    listed = row.meta.get(ALLOWED_KEYS)
    if listed is None:
        return True
    return key_fingerprint is not None and key_fingerprint in {k.strip() for k in listed.split(",")}


def _not_found(value: str) -> NotFoundError:
    # The same answer whether the assistant is missing or private: a key without access learns nothing.
    return NotFoundError(f"No assistant found with name or id '{value}'.", param="assistant")


async def find_assistant(
    session: AsyncSession, tenant: str, key_fingerprint: str | None, value: str
) -> AssistantRow:
    """The tenant's assistant with id or name ``value`` that the key may use."""
    by_id = await session.scalar(
        select(AssistantRow).where(AssistantRow.tenant == tenant, AssistantRow.id == value)
    )
    if by_id is not None:
        if not usable_by(by_id, key_fingerprint):
            raise _not_found(value)
        return by_id
    named = await session.scalars(
        select(AssistantRow).where(AssistantRow.tenant == tenant, AssistantRow.name == value)
    )
    usable = [row for row in named if usable_by(row, key_fingerprint)]
    if not usable:
        raise _not_found(value)
    if len(usable) > 1:
        raise InvalidRequestError(
            f"Several assistants are named '{value}': name the one to use by its id.", param="assistant"
        )
    return usable[0]


async def choose_assistant(
    session: AsyncSession,
    tenant: str,
    key_fingerprint: str | None,
    requested: str | None,
    current: str | None,
    default: str | None,
) -> AssistantRow | None:
    """The assistant of one /ask turn: the one requested, else the session's, else the configured default
    (``ASSISTD_ASK_DEFAULT_ASSISTANT``); None when it is the tenant's built-in default
    (``default_assistant``). The tenant's own assistants are never guessed at, however few: which one
    answers must not change because an assistant was created or deleted elsewhere."""
    if requested is not None:
        return await find_assistant(session, tenant, key_fingerprint, requested)
    if current is not None:
        row = await session.scalar(
            select(AssistantRow).where(AssistantRow.tenant == tenant, AssistantRow.id == current)
        )
        if row is not None:
            if not usable_by(row, key_fingerprint):
                raise _not_found(current)
            return row
        # The session's assistant was deleted since: choose again, as for a new session.
    if default is not None:
        try:
            return await find_assistant(session, tenant, key_fingerprint, default)
        except NotFoundError:
            pass  # a default shared by several tenants need not exist in each of them
    return None


# The built-in default assistant -----------------------------------------------------------------

# Marks the assistant in its metadata, for people reading /v1/assistants; the ask_defaults row, not this
# marker, is what says which assistant it is (metadata can be edited).
DEFAULT_METADATA = {"assistd_default": "ask"}
DEFAULT_NAME = "Default assistant"
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
# Tries to find or make the default before giving up; a try is lost only to a call that made or replaced
# the default meanwhile, whose assistant the next try reads.
_DEFAULT_TRIES = 3


class _ReplacedMeanwhile(Exception):
    """Another call replaced the tenant's deleted default first."""


async def _recorded_default(session: AsyncSession, tenant: str) -> AssistantRow | None:
    return await session.scalar(
        select(AssistantRow)
        .join(AskDefaultRow, AskDefaultRow.assistant_id == AssistantRow.id)
        .where(AskDefaultRow.tenant == tenant, AssistantRow.tenant == tenant)
    )


async def _make_default(session: AsyncSession, tenant: str, model: str) -> AssistantRow:
    """In a write transaction: the tenant's default, made (or remade, if it was deleted) unless another
    call made it since it was last read."""
    recorded = await session.scalar(select(AskDefaultRow).where(AskDefaultRow.tenant == tenant))
    if recorded is not None:
        existing = await session.scalar(
            select(AssistantRow).where(
                AssistantRow.tenant == tenant, AssistantRow.id == recorded.assistant_id
            )
        )
        if existing is not None:
            return existing
    made = await assistants.create(
        session,
        tenant,
        AssistantCreateParams(
            model=model, name=DEFAULT_NAME, instructions=DEFAULT_INSTRUCTIONS, metadata=dict(DEFAULT_METADATA)
        ),
    )
    if recorded is None:
        # A concurrent first call inserting the same tenant fails here (IntegrityError) on every backend.
        session.add(AskDefaultRow(tenant=tenant, assistant_id=made.id))
        await session.flush()
    else:
        # Conditional, so that of two calls replacing the same deleted default only one succeeds: the
        # other's UPDATE matches no row once the first has committed (PostgreSQL re-reads it after the
        # first's lock; SQLite writers take turns).
        result = await session.execute(
            update(AskDefaultRow)
            .where(AskDefaultRow.tenant == tenant, AskDefaultRow.assistant_id == recorded.assistant_id)
            .values(assistant_id=made.id)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _ReplacedMeanwhile
    return await assistants.get_row(session, tenant, made.id)


async def default_assistant(
    db: Database,
    tenant: str,
    key_fingerprint: str | None,
    default_model: Callable[[], Awaitable[str | None]],
) -> AssistantRow:
    """The tenant's built-in /ask assistant, made on first use with the server's default model.

    Exactly one per tenant, however many first calls arrive at once (the ``ask_defaults`` row decides);
    a normal assistant otherwise, which the tenant may edit or delete (the next call then makes another).
    """
    for _ in range(_DEFAULT_TRIES):
        async with db.read() as session:
            row = await _recorded_default(session, tenant)
        if row is None:
            # Outside any transaction: finding the model may ask the upstream for its list.
            model = await default_model()
            if model is None:
                raise InvalidRequestError(
                    "No assistant can answer: this server has no default model for its built-in "
                    "assistant (set ASSISTD_DEFAULT_MODEL); name an assistant in 'assistant'.",
                    param="assistant",
                )
            try:
                async with db.write() as session:
                    row = await _make_default(session, tenant, model)
            except (IntegrityError, _ReplacedMeanwhile):
                continue  # another call made it first: read theirs
        if not usable_by(row, key_fingerprint):
            # The tenant made its default private; other keys get the answer of any private assistant.
            raise _not_found(row.id)
        return row
    raise ConflictError(
        "The default assistant was being replaced by other calls at the same time; try again.",
        param="assistant",
    )
