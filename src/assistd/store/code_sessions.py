"""Where each thread's code_interpreter session lives, for every process to see: the process holding it, so
that the thread's runs go there while it lives (``held_elsewhere``, ``live_holder``: clauses the run queue
builds into its statements), and the files the thread's code wrote, so that a session started on another
process gets them back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CodeSessionRow, ProcessRow


@dataclass(frozen=True)
class CodeSession:
    thread_id: str
    process_id: str
    session_id: str
    live: bool
    files: dict[str, str] = field(default_factory=dict)


async def get(session: AsyncSession, thread_id: str) -> CodeSession | None:
    c = CodeSessionRow
    row = (
        await session.execute(
            select(c.process_id, c.session_id, c.live, c.files).where(c.thread_id == thread_id)
        )
    ).first()
    if row is None:
        return None
    return CodeSession(thread_id, row.process_id, row.session_id, bool(row.live), dict(row.files or {}))


async def record(
    session: AsyncSession, thread_id: str, process_id: str, session_id: str, files: dict[str, str]
) -> None:
    """The thread's session ``session_id`` runs on ``process_id``; its code has written ``files``."""
    values: dict[str, Any] = {
        "process_id": process_id,
        "session_id": session_id,
        "live": True,
        "files": files,
        "updated_at": time.time(),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(CodeSessionRow)
        .values(thread_id=thread_id, **values)
        .on_conflict_do_update(index_elements=["thread_id"], set_=values)
    )
    await session.execute(statement)


async def ended(session: AsyncSession, thread_id: str, session_id: str) -> None:
    """Session ``session_id`` of the thread ended: its runs may go anywhere. A row that already names a
    newer session is left alone (an end reported late must not unpin the session that followed)."""
    await session.execute(
        update(CodeSessionRow)
        .where(CodeSessionRow.thread_id == thread_id, CodeSessionRow.session_id == session_id)
        .values(live=False, updated_at=time.time())
    )


async def forget(session: AsyncSession, thread_id: str) -> None:
    await session.execute(delete(CodeSessionRow).where(CodeSessionRow.thread_id == thread_id))


def live_holder(thread: ColumnElement[Any]) -> ScalarSelect[Any]:
    """The process holding ``thread``'s live session, if any (whether that process lives is the claim's
    question: it may die while the run waits)."""
    return (
        select(CodeSessionRow.process_id)
        .where(CodeSessionRow.thread_id == thread, CodeSessionRow.live.is_(True))
        .scalar_subquery()
    )


def held_elsewhere(
    thread: ColumnElement[Any], process: ColumnElement[Any], alive_after: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Whether ``thread``'s live session is held by a process other than ``process`` that was seen after
    ``alive_after``."""
    return exists().where(
        and_(
            CodeSessionRow.thread_id == thread,
            CodeSessionRow.live.is_(True),
            CodeSessionRow.process_id != process,
            ProcessRow.id == CodeSessionRow.process_id,
            ProcessRow.seen_at > alive_after,
        )
    )


def holder_alive(holder: ColumnElement[Any], alive_after: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether the process ``holder`` names was seen after ``alive_after``."""
    return exists().where(ProcessRow.id == holder, ProcessRow.seen_at > alive_after)
