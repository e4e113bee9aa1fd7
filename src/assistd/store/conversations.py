"""Conversations: threads seen through the Conversations API. A conversation IS a thread row (made here
with a ``conv_`` id, which every /v1/threads endpoint takes too); its items are the thread's messages and
its runs' tool calls, as ``protocol.items`` maps them, in conversation order (``ordered_items``)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..ids import new_id
from ..protocol.common import ParamValueError, ToolResources
from ..protocol.conversations import Conversation, ConversationDeleted, ConversationItemList
from ..protocol.items import ParsedInput, input_to_messages, message_to_item, parse_item_id, step_to_items
from . import messages, references, runs, threads
from .clock import now
from .detached import insert_rows
from .models import MessageRow, RunRow, RunStepRow, ThreadRow


def to_wire(row: ThreadRow) -> Conversation:
    return Conversation(
        id=row.id,
        created_at=row.created_at,
        metadata=row.meta,
        tool_resources=ToolResources.model_validate(row.tool_resources or {}),
    )


def parse_items(value: list[Any], at: str) -> ParsedInput:
    """Input items a conversation can hold (user and assistant messages), or a 400 naming the wrong one."""
    try:
        return input_to_messages(value, at=at)
    except ParamValueError as exc:
        raise InvalidRequestError(
            f"Invalid '{exc.param}': {exc}", param=exc.param, code="invalid_value"
        ) from exc


async def get_row(session: AsyncSession, tenant: str, conversation_id: str) -> ThreadRow:
    """The conversation's thread; a thread of another tenant is not found, as on /v1/threads."""
    row = await session.scalar(
        select(ThreadRow).where(ThreadRow.id == conversation_id, ThreadRow.tenant == tenant)
    )
    if row is None:
        raise NotFoundError(f"No conversation found with id '{conversation_id}'.", param="conversation_id")
    return row


async def create(
    session: AsyncSession, tenant: str, items: ParsedInput, metadata: dict[str, str] | None
) -> Conversation:
    row = ThreadRow(
        id=new_id("conv"), tenant=tenant, created_at=now(), tool_resources=None, meta=metadata or {}
    )
    await insert_rows(session, row)
    await _insert_messages(session, tenant, row.id, items)
    return to_wire(row)


async def update(
    session: AsyncSession, tenant: str, conversation_id: str, metadata: dict[str, str] | None
) -> Conversation:
    row = await get_row(session, tenant, conversation_id)
    row.meta = metadata or {}
    await session.flush()
    return to_wire(row)


async def remove(session: AsyncSession, tenant: str, conversation_id: str) -> ConversationDeleted:
    await get_row(session, tenant, conversation_id)
    await threads.remove(session, tenant, conversation_id)
    return ConversationDeleted(id=conversation_id)


async def _insert_messages(
    session: AsyncSession, tenant: str, thread_id: str, items: ParsedInput
) -> list[MessageRow]:
    # Checked first with the names the client used: a message names them otherwise (input_file parts are
    # its attachments).
    await references.require_files(session, tenant, items.files)
    return [
        await messages.insert(session, tenant, thread_id, params, at=at)
        for params, at in zip(items.messages, items.message_at, strict=True)
    ]


async def add_items(
    session: AsyncSession, tenant: str, conversation_id: str, items: ParsedInput
) -> ConversationItemList:
    """Add the items as messages, refused while a run is active on the thread (as /messages does)."""
    row = await get_row(session, tenant, conversation_id)
    if row.active_run_id is not None:
        raise ConflictError(
            f"Can't add items to {row.id} while a run {row.active_run_id} is active.", param="conversation_id"
        )
    added = [
        message_to_item(messages.to_wire(message))
        for message in await _insert_messages(session, tenant, row.id, items)
    ]
    return _list_of(added, has_more=False)


# Items in conversation order ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """Items that stay together, and where they go: after message ``position`` of the thread (in insertion
    order), before or after that message's own block by ``after``, then by ``tiebreak``."""

    position: int
    after: int
    tiebreak: int
    items: list[dict[str, Any]]


def ordered_items(
    thread_messages: Sequence[MessageRow],
    thread_runs: Sequence[RunRow],
    thread_steps: Sequence[RunStepRow],
    include: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The thread's items, oldest first.

    Messages keep their insertion order. A run's items are contiguous (no message can be added to a thread
    while a run is active on it): its own messages that no step created (none today), then its steps in
    order, a ``message_creation`` step standing for its message. A run that wrote a message takes the place
    of its first message; a run that wrote none goes after the last message made no later than the run
    (``created_at`` is in seconds: a message added in the second such a run ended may come before it)."""
    wire = {row.id: messages.to_wire(row) for row in thread_messages}
    position = {row.id: index for index, row in enumerate(thread_messages)}
    times = [row.created_at for row in thread_messages]
    steps_of: dict[str, list[RunStepRow]] = {}
    for step in thread_steps:
        steps_of.setdefault(step.run_id, []).append(step)
    written: dict[str, list[MessageRow]] = {}
    for message in thread_messages:
        if message.run_id is not None:
            written.setdefault(message.run_id, []).append(message)
    blocks: list[_Block] = []
    placed: set[str] = set()
    for run in thread_runs:
        own = written.get(run.id, [])
        created = {
            step.step_details["message_creation"]["message_id"]
            for step in steps_of.get(run.id, [])
            if step.type == "message_creation"
        }
        items = [message_to_item(wire[m.id]) for m in own if m.id not in created]
        for step in steps_of.get(run.id, []):
            if step.type == "message_creation":
                message_id = step.step_details["message_creation"]["message_id"]
                if message_id in wire:
                    items.append(message_to_item(wire[message_id]))
            else:
                items += step_to_items(
                    runs.step_to_wire(step, include_file_search_content=True),
                    tool_io=step.tool_io,
                    include=include,
                    container_id=runs.container_of(run.tools, run.thread_id),
                )
        placed.update(m.id for m in own)
        if own:
            blocks.append(_Block(position[own[0].id], 0, 0, items))
        else:
            blocks.append(_Block(bisect_right(times, run.created_at) - 1, 1, run.pk, items))
    for message in thread_messages:
        if message.id not in placed:
            blocks.append(_Block(position[message.id], 0, 0, [message_to_item(wire[message.id])]))
    blocks.sort(key=lambda block: (block.position, block.after, block.tiebreak))
    return [item for block in blocks for item in block.items]


async def _thread_items(
    session: AsyncSession, thread_id: str, include: Collection[str]
) -> list[dict[str, Any]]:
    thread_messages = await messages.history(session, thread_id)
    of_thread = select(RunRow).where(RunRow.thread_id == thread_id).order_by(RunRow.pk)
    thread_runs = list((await session.scalars(of_thread)).all())
    # Steps by their runs (run_steps is indexed by run, not by thread).
    run_ids = select(RunRow.id).where(RunRow.thread_id == thread_id).scalar_subquery()
    of_runs = select(RunStepRow).where(RunStepRow.run_id.in_(run_ids)).order_by(RunStepRow.pk)
    thread_steps = list((await session.scalars(of_runs)).all()) if thread_runs else []
    return ordered_items(thread_messages, thread_runs, thread_steps, include)


def _list_of(items: list[dict[str, Any]], has_more: bool) -> ConversationItemList:
    return ConversationItemList(
        data=items,
        first_id=items[0]["id"] if items else None,
        last_id=items[-1]["id"] if items else None,
        has_more=has_more,
    )


async def list_items(
    session: AsyncSession,
    tenant: str,
    conversation_id: str,
    *,
    limit: int,
    order: Literal["asc", "desc"],
    after: str | None,
    include: Collection[str],
) -> ConversationItemList:
    """A page of the conversation's items. The whole thread is read to order its messages and tool calls
    together: a page costs the thread's size, not the page's."""
    row = await get_row(session, tenant, conversation_id)
    items = await _thread_items(session, row.id, include)
    if order == "desc":
        items.reverse()
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequestError(f"No item found for cursor '{after}'.", param="after")
        items = items[ids.index(after) + 1 :]
    return _list_of(items[:limit], has_more=len(items) > limit)


async def get_item(
    session: AsyncSession, tenant: str, conversation_id: str, item_id: str, include: Collection[str]
) -> dict[str, Any]:
    row = await get_row(session, tenant, conversation_id)
    ref = parse_item_id(item_id)
    if ref is None:
        message = await session.scalar(
            select(MessageRow).where(MessageRow.id == item_id, MessageRow.thread_id == row.id)
        )
        if message is not None:
            return message_to_item(messages.to_wire(message))
    else:
        step = await session.scalar(
            select(RunStepRow).where(RunStepRow.id == ref.step_id, RunStepRow.thread_id == row.id)
        )
        if step is not None:
            tools = await session.scalar(select(RunRow.tools).where(RunRow.id == step.run_id))
            for item in step_to_items(
                runs.step_to_wire(step, include_file_search_content=True),
                tool_io=step.tool_io,
                include=include,
                container_id=runs.container_of(tools, step.thread_id),
            ):
                if item["id"] == item_id:
                    return item
    raise NotFoundError(f"No item found with id '{item_id}'.", param="item_id")


async def delete_item(session: AsyncSession, tenant: str, conversation_id: str, item_id: str) -> Conversation:
    """Delete a message item (as DELETE /messages does, also while a run is active). A tool-call item is
    a run's step, which assistd keeps: deleting one is refused."""
    row = await get_row(session, tenant, conversation_id)
    if parse_item_id(item_id) is not None:
        await get_item(session, tenant, conversation_id, item_id, ())
        raise InvalidRequestError(
            f"Item '{item_id}' is a tool call of a run: only message items can be deleted.", param="item_id"
        )
    message = await session.scalar(
        select(MessageRow).where(MessageRow.id == item_id, MessageRow.thread_id == row.id)
    )
    if message is None:
        raise NotFoundError(f"No item found with id '{item_id}'.", param="item_id")
    await messages.remove(session, tenant, row.id, item_id)
    return to_wire(row)
