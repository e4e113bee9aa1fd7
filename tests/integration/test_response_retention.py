"""Retention of stored responses (``store.responses.prune``), the cutoff given: which responses go, and which
of their threads go with them. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from assistd.engine.state import TERMINAL
from assistd.store import responses as store
from assistd.store.database import Database
from assistd.store.models import ResponseRow, RunRow, ThreadRow

_DAY = 86_400


def _thread(thread_id: str, active_run: str | None = None) -> ThreadRow:
    return ThreadRow(
        id=thread_id, tenant="t", created_at=0, meta={}, tool_resources=None, active_run_id=active_run
    )


def _run(run_id: str, thread_id: str, status: str) -> RunRow:
    return RunRow(
        id=run_id,
        tenant="t",
        created_at=0,
        meta={},
        thread_id=thread_id,
        assistant_id=None,
        status=status,
        model="m",
        instructions="",
        tools=[],
        truncation_strategy={"type": "auto"},
        tool_choice="auto",
        parallel_tool_calls=True,
        response_format="auto",
    )


def _response(
    response_id: str, run_id: str, thread_id: str, created_at: int, conversation: bool
) -> ResponseRow:
    row = store.new_row(
        "t",
        run_id,
        thread_id,
        conversation_id=thread_id if conversation else None,
        previous_response_id=None,
        request={"model": "m"},
        metadata={},
        input_message_ids=[],
    )
    row.id, row.created_at = response_id, created_at
    return row


def test_prune_keeps_what_is_recent_running_or_still_needed(migrated_url: str) -> None:
    now = 100 * _DAY
    old, recent = now - 31 * _DAY, now - 29 * _DAY

    async def scenario() -> None:
        db = Database(migrated_url)
        try:
            async with db.write() as session:
                session.add_all(
                    [
                        # A response of its own, old and ended: it goes, with its thread.
                        _thread("thread_alone"),
                        _run("run_alone", "thread_alone", "completed"),
                        # A chain in one thread: the old response goes, the thread stays for the recent one.
                        _thread("thread_chain"),
                        _run("run_chain_1", "thread_chain", "completed"),
                        _run("run_chain_2", "thread_chain", "completed"),
                        # A conversation's old response: the record goes, the conversation stays.
                        _thread("thread_conv"),
                        _run("run_conv", "thread_conv", "failed"),
                        # Old, but its run has not ended: kept.
                        _thread("thread_running", active_run="run_running"),
                        _run("run_running", "thread_running", "in_progress"),
                    ]
                )
                await session.flush()
                session.add_all(
                    [
                        _response("resp_alone", "run_alone", "thread_alone", old, False),
                        _response("resp_chain_1", "run_chain_1", "thread_chain", old, False),
                        _response("resp_chain_2", "run_chain_2", "thread_chain", recent, False),
                        _response("resp_conv", "run_conv", "thread_conv", old, True),
                        _response("resp_running", "run_running", "thread_running", old, False),
                    ]
                )
            async with db.write() as session:
                assert await store.prune(session, now - 40 * _DAY, TERMINAL) == 0
                assert await store.prune(session, now - 30 * _DAY, TERMINAL) == 3
            async with db.read() as session:
                responses = set((await session.scalars(select(ResponseRow.id))).all())
                threads = set((await session.scalars(select(ThreadRow.id))).all())
                runs = set((await session.scalars(select(RunRow.id))).all())
            assert responses == {"resp_chain_2", "resp_running"}
            assert threads == {"thread_chain", "thread_conv", "thread_running"}
            assert runs == {"run_chain_1", "run_chain_2", "run_conv", "run_running"}
            # Its last response past the retention too, the chain's thread goes with it.
            async with db.write() as session:
                assert await store.prune(session, now, TERMINAL) == 1
            async with db.read() as session:
                threads = set((await session.scalars(select(ThreadRow.id))).all())
            assert threads == {"thread_conv", "thread_running"}
        finally:
            await db.close()

    asyncio.run(scenario())
