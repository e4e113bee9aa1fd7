"""Sessions of the /ask service: a client's session id, per tenant, mapped to a thread and an assistant."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import InvalidRequestError, NotFoundError
from ..protocol.ask import AskMessage, AskSession, AskSessionDetail
from ..protocol.common import DeletedObject, ListPage
from . import messages
from .clock import now
from .models import AskSessionRow, AssistantRow, MessageRow
from .pagination import PageQuery, fetch_page, page_of


def to_wire(row: AskSessionRow) -> AskSession:
    return AskSession(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        thread_id=row.thread_id,
        assistant_id=row.assistant_id,
    )


def message_text(row: MessageRow) -> str:
    """The text parts of a message, joined; images and other parts have no text to show."""
    return "".join(part["text"]["value"] for part in row.content if part.get("type") == "text")


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


async def detail(session: AsyncSession, row: AskSessionRow) -> AskSessionDetail:
    history = await messages.history(session, row.thread_id)
    return AskSessionDetail(
        **to_wire(row).model_dump(),
        messages=[
            AskMessage(
                id=message.id,
                role="assistant" if message.role == "assistant" else "user",
                content=message_text(message),
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
) -> AssistantRow:
    """The assistant of one /ask turn: the one requested, else the session's, else the configured default,
    else the tenant's only assistant the key may use."""
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
    usable: list[AssistantRow] = []
    for row in await session.scalars(
        select(AssistantRow).where(AssistantRow.tenant == tenant).order_by(AssistantRow.pk)
    ):
        if usable_by(row, key_fingerprint):
            usable.append(row)
            if len(usable) > 1:
                raise InvalidRequestError(
                    "Several assistants could answer: name one in 'assistant' (by name or id), "
                    "or set ASSISTD_ASK_DEFAULT_ASSISTANT.",
                    param="assistant",
                )
    if not usable:
        raise InvalidRequestError(
            "No assistant can answer: create one with POST /v1/assistants, or name one in 'assistant'.",
            param="assistant",
        )
    return usable[0]
