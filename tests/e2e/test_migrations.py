"""Rows written before a check existed are repaired by a migration, so they render again."""

from __future__ import annotations

import asyncio

import pytest
from openai.types.beta import Assistant, Thread
from sqlalchemy import select

from assistd.store.database import Database
from assistd.store.models import AssistantRow, ThreadRow
from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from schema import downgrade


async def _attach_second_store(url: str, assistant_id: str, thread_id: str, extra: str) -> None:
    """The schema back at the revision before the repair, and what a request naming stores both ways
    wrote then: two ids on each row."""
    await downgrade(url, "0004")
    db = Database(url)
    try:
        async with db.write() as session:
            for model, row_id in ((AssistantRow, assistant_id), (ThreadRow, thread_id)):
                row = (await session.execute(select(model).where(model.id == row_id))).scalar_one()
                search = row.tool_resources["file_search"]
                both = [*search["vector_store_ids"], extra]
                row.tool_resources = {"file_search": {"vector_store_ids": both}}
    finally:
        await db.close()


def test_rows_with_two_vector_stores_render_after_upgrade(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    srv = start_server(tmp_path_factory, databases, fake)
    try:
        with make_client(srv) as client:
            named = client.vector_stores.create(name="named")
            helper = client.vector_stores.create(name="helper")
            resources = {"file_search": {"vector_store_ids": [named.id]}}
            assistant = client.beta.assistants.create(model="fake-model", tool_resources=resources)
            thread = client.beta.threads.create(tool_resources=resources)
        srv.stop()
        asyncio.run(_attach_second_store(srv.database_url, assistant.id, thread.id, helper.id))
        srv.start()
        with make_client(srv) as client:
            got_assistant = client.beta.assistants.retrieve(assistant.id)
            got_thread = client.beta.threads.retrieve(thread.id)
            listed = client.beta.assistants.list()
            kept = client.vector_stores.retrieve(helper.id)
        for rendered in (got_assistant, got_thread):
            assert rendered.tool_resources is not None and rendered.tool_resources.file_search is not None
            assert rendered.tool_resources.file_search.vector_store_ids == [named.id]
        Assistant.model_validate(got_assistant.model_dump())
        Thread.model_validate(got_thread.model_dump())
        assert [a.id for a in listed.data] == [assistant.id]
        # The detached store is not deleted.
        assert kept.id == helper.id
    finally:
        srv.stop()
