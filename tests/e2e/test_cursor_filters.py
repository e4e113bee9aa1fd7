"""Cursors of filtered lists (issue 14): a cursor is any object of the collection, inside the filter or not.

OpenAI pages a filtered list (messages by ``run_id``, files by ``purpose``, a vector store's or a batch's
files by ``filter``) from any object of the collection: the cursor is looked up in the collection (the
tenant, the thread, the vector store, the batch) and the filter only chooses the page's rows. An id that is
not in the collection at all stays a 400 naming the parameter.

The tenant's file list spans the whole tenant, so these tests use a server of their own whose tenants
hold exactly the objects made here, and every page is asserted id for id.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.pagination import SyncCursorPage
from openai.types import FileObject
from openai.types.beta.threads import Message
from openai.types.vector_stores import VectorStoreFile

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import KEYS, AssistdServer
from wire import api_error, check, raw

LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


@dataclass(frozen=True)
class Page:
    """What a test asserts on of one list page: its ids in order, and whether more follow."""

    ids: list[str]
    has_more: bool


def _ends(body: dict[str, Any], ids: list[str]) -> Page:
    assert body["object"] == "list"
    assert body["first_id"] == (ids[0] if ids else None)
    assert body["last_id"] == (ids[-1] if ids else None)
    if not ids:
        assert body["has_more"] is False
    return Page(ids, body["has_more"])


def _messages(client: OpenAI, thread_id: str, **params: Any) -> Page:
    body: dict[str, Any] = raw(client.beta.threads.messages.with_raw_response.list(thread_id, **params))
    # The SDK's own page type, parsed strictly; OpenAI's schema too when the page is not empty (its
    # first_id and last_id say "string", silent on empty pages).
    page = check(SyncCursorPage[Message], body, "ListMessagesResponse" if body["data"] else None)
    return _ends(body, [message.id for message in page.data])


def _files(client: OpenAI, **params: Any) -> Page:
    body: dict[str, Any] = raw(client.files.with_raw_response.list(**params))
    page = check(SyncCursorPage[FileObject], body, "ListFilesResponse" if body["data"] else None)
    return _ends(body, [file.id for file in page.data])


def _store_files(client: OpenAI, store_id: str, **params: Any) -> Page:
    body: dict[str, Any] = raw(client.vector_stores.files.with_raw_response.list(store_id, **params))
    page = check(
        SyncCursorPage[VectorStoreFile], body, "ListVectorStoreFilesResponse" if body["data"] else None
    )
    return _ends(body, [file.id for file in page.data])


def _batch_files(client: OpenAI, store_id: str, batch_id: str, **params: Any) -> Page:
    response = client.vector_stores.file_batches.with_raw_response.list_files(
        batch_id, vector_store_id=store_id, **params
    )
    body: dict[str, Any] = raw(response)
    page = check(
        SyncCursorPage[VectorStoreFile], body, "ListVectorStoreFilesResponse" if body["data"] else None
    )
    return _ends(body, [file.id for file in page.data])


def _refused(call: Callable[[], object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    error = api_error(info.value, 400, param)
    assert "cursor" in error["message"]


@pytest.fixture(scope="module")
def own_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    server = start_server(tmp_path_factory, databases, fake)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alpha(own_server: AssistdServer) -> Iterator[OpenAI]:
    with make_client(own_server, KEYS[0]) as client:
        yield client


@pytest.fixture(scope="module")
def beta(own_server: AssistdServer) -> Iterator[OpenAI]:
    with make_client(own_server, KEYS[1]) as client:
        yield client


# Messages filtered by run_id ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunThread:
    thread_id: str
    runs: list[str]
    # The thread's messages oldest first: u0, a1 (run 0), u2, a3 a4 (run 1), u5, a6 (run 2), u7.
    ids: list[str]


@pytest.fixture(scope="module")
def run_thread(alpha: OpenAI, fake: FakeUpstream) -> RunThread:
    """A thread whose runs' messages lie between messages of no run; the middle run wrote two."""
    fake.reset()
    assistant = alpha.beta.assistants.create(model="fake-model", tools=[LOOKUP_TOOL])
    thread = alpha.beta.threads.create(messages=[{"role": "user", "content": "u0"}])
    threads = alpha.beta.threads
    runs: list[str] = []

    fake.push(Text("a1"))
    run = threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20)
    assert run.status == "completed"
    runs.append(run.id)

    threads.messages.create(thread.id, role="user", content="u2")
    # Text before a tool call is a message of its own, so this run writes two: a3 and a4.
    fake.push(ToolCalls([{"id": "call_cursor", "name": "lookup", "arguments": {}}], text="a3"), Text("a4"))
    run = threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20)
    assert run.status == "requires_action"
    run = threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": "call_cursor", "output": "found"}],
        poll_interval_ms=20,
    )
    assert run.status == "completed"
    runs.append(run.id)

    threads.messages.create(thread.id, role="user", content="u5")
    fake.push(Text("a6"))
    run = threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20)
    assert run.status == "completed"
    runs.append(run.id)
    threads.messages.create(thread.id, role="user", content="u7")

    listed = threads.messages.list(thread.id, order="asc", limit=100).data
    texts = [m.content[0].text.value for m in listed if m.content[0].type == "text"]
    assert texts == ["u0", "a1", "u2", "a3", "a4", "u5", "a6", "u7"]
    owners = [m.run_id for m in listed]
    assert owners == [None, runs[0], None, runs[1], runs[1], None, runs[2], None]
    return RunThread(thread.id, runs, [m.id for m in listed])


def test_message_cursor_outside_run_filter_pages_from_it(alpha: OpenAI, run_thread: RunThread) -> None:
    t, ids = run_thread, run_thread.ids
    run = t.runs[1]  # its messages are ids[3] and ids[4]
    # Cursors that are messages of no run (u2, u5), or of another run (a1, a6): the page is the run's.
    assert _messages(alpha, t.thread_id, run_id=run, after=ids[5]) == Page([ids[4], ids[3]], False)
    assert _messages(alpha, t.thread_id, run_id=run, after=ids[6]) == Page([ids[4], ids[3]], False)
    assert _messages(alpha, t.thread_id, run_id=run, after=ids[5], limit=1) == Page([ids[4]], True)
    assert _messages(alpha, t.thread_id, run_id=run, after=ids[2]) == Page([], False)
    assert _messages(alpha, t.thread_id, run_id=run, before=ids[2]) == Page([ids[4], ids[3]], False)
    # ``before`` alone gives the rows nearest the cursor.
    assert _messages(alpha, t.thread_id, run_id=run, before=ids[1], limit=1) == Page([ids[3]], True)
    assert _messages(alpha, t.thread_id, run_id=run, before=ids[5]) == Page([], False)
    assert _messages(alpha, t.thread_id, run_id=run, after=ids[7], before=ids[0]) == Page(
        [ids[4], ids[3]], False
    )

    assert _messages(alpha, t.thread_id, run_id=run, order="asc", after=ids[2]) == Page(
        [ids[3], ids[4]], False
    )
    assert _messages(alpha, t.thread_id, run_id=run, order="asc", after=ids[1], limit=1) == Page(
        [ids[3]], True
    )
    assert _messages(alpha, t.thread_id, run_id=run, order="asc", after=ids[5]) == Page([], False)
    assert _messages(alpha, t.thread_id, run_id=run, order="asc", before=ids[5]) == Page(
        [ids[3], ids[4]], False
    )
    assert _messages(alpha, t.thread_id, run_id=run, order="asc", before=ids[6], limit=1) == Page(
        [ids[4]], True
    )

    # The other runs from cursors on the far side of the middle run.
    assert _messages(alpha, t.thread_id, run_id=t.runs[0], after=ids[7]) == Page([ids[1]], False)
    assert _messages(alpha, t.thread_id, run_id=t.runs[2], order="asc", after=ids[0]) == Page([ids[6]], False)
    assert _messages(alpha, t.thread_id, run_id=t.runs[2], before=ids[0]) == Page([ids[6]], False)
    # A cursor inside the filter still works as before.
    assert _messages(alpha, t.thread_id, run_id=run, after=ids[4]) == Page([ids[3]], False)


def test_message_cursor_outside_the_thread_is_refused(
    alpha: OpenAI, beta: OpenAI, run_thread: RunThread
) -> None:
    t = run_thread
    other = alpha.beta.threads.create(messages=[{"role": "user", "content": "elsewhere"}])
    foreign = alpha.beta.threads.messages.list(other.id).data[0].id
    messages = alpha.beta.threads.messages
    for param in ("after", "before"):
        cursor: dict[str, Any] = {param: foreign}
        _refused(partial(messages.list, t.thread_id, run_id=t.runs[1], **cursor), param)
        _refused(partial(messages.list, t.thread_id, **cursor), param)
    # Another tenant's message is no cursor either, and the other tenant's own thread is still theirs.
    theirs = beta.beta.threads.create(messages=[{"role": "user", "content": "beta's"}])
    their_message = beta.beta.threads.messages.list(theirs.id).data[0].id
    _refused(lambda: messages.list(t.thread_id, run_id=t.runs[1], after=their_message), "after")
    _refused(lambda: messages.list(t.thread_id, run_id=t.runs[1], after="msg_doesnotexist"), "after")
    assert _messages(beta, theirs.id, after=their_message) == Page([], False)


# Files filtered by purpose -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant_files(alpha: OpenAI) -> list[str]:
    """The tenant's files oldest first, purposes alternating: assistants, user_data, assistants, ..."""
    purposes = ["assistants", "user_data", "assistants", "user_data", "assistants"]
    ids = [
        alpha.files.create(file=(f"f{i}.txt", io.BytesIO(f"file {i}".encode())), purpose=purpose).id
        for i, purpose in enumerate(purposes)
    ]
    assert _files(alpha, order="asc") == Page(ids, False), "the tenant holds exactly these files"
    return ids


def test_file_cursor_outside_purpose_filter_pages_from_it(alpha: OpenAI, tenant_files: list[str]) -> None:
    a0, u1, a2, u3, a4 = tenant_files
    assert _files(alpha, purpose="assistants", after=u3) == Page([a2, a0], False)
    assert _files(alpha, purpose="assistants", after=u3, limit=1) == Page([a2], True)
    assert _files(alpha, purpose="assistants", after=u1) == Page([a0], False)
    assert _files(alpha, purpose="assistants", order="asc", after=u1) == Page([a2, a4], False)
    assert _files(alpha, purpose="assistants", order="asc", after=u1, limit=1) == Page([a2], True)
    assert _files(alpha, purpose="assistants", order="asc", after=u3) == Page([a4], False)
    assert _files(alpha, purpose="user_data", after=a4) == Page([u3, u1], False)
    assert _files(alpha, purpose="user_data", after=a2) == Page([u1], False)
    assert _files(alpha, purpose="user_data", order="asc", after=a2) == Page([u3], False)
    assert _files(alpha, purpose="user_data", order="asc", after=a4) == Page([], False)
    # A purpose no file has: an empty page, from any of the tenant's files.
    assert _files(alpha, purpose="vision", after=a2) == Page([], False)
    # The SDK's auto-pagination follows last_id across pages of the filtered list.
    assert [f.id for f in alpha.files.list(purpose="assistants", limit=1, after=u3)] == [a2, a0]


def test_file_cursor_outside_the_tenant_is_refused(
    alpha: OpenAI, beta: OpenAI, tenant_files: list[str]
) -> None:
    theirs = beta.files.create(file=("b.txt", io.BytesIO(b"beta's")), purpose="assistants").id
    _refused(lambda: alpha.files.list(purpose="assistants", after=theirs), "after")
    _refused(lambda: alpha.files.list(purpose="user_data", after=theirs), "after")
    _refused(lambda: alpha.files.list(after=theirs), "after")
    _refused(lambda: alpha.files.list(purpose="assistants", after="file-doesnotexist"), "after")
    # A deleted file is no cursor any more.
    gone = alpha.files.create(file=("gone.txt", io.BytesIO(b"gone")), purpose="user_data").id
    alpha.files.delete(gone)
    _refused(lambda: alpha.files.list(purpose="assistants", after=gone), "after")
    assert _files(beta, purpose="user_data", after=theirs) == Page([], False)
    assert _files(alpha, order="asc") == Page(tenant_files, False)


# Vector store files and batch files filtered by status -------------------------------------------

# A text file ingests; a binary of an unknown type fails: the two statuses the filter tells apart.
GOOD = ("ok.txt", b"Plain text that ingests.")
BAD = ("archive.xyz", b"\x00\x01binary")


def _upload(client: OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id


@dataclass(frozen=True)
class Store:
    store_id: str
    # The store's files oldest first, statuses alternating: completed, failed, completed, failed, completed.
    ids: list[str]
    # The store's batch, files oldest first: failed, completed, failed, completed.
    batch_id: str
    batch_ids: list[str]


@pytest.fixture(scope="module")
def store(alpha: OpenAI) -> Store:
    store = alpha.vector_stores.create(name="cursors")
    ids: list[str] = []
    for i in range(5):
        name, data = GOOD if i % 2 == 0 else BAD
        done = alpha.vector_stores.files.create_and_poll(
            file_id=_upload(alpha, name, data), vector_store_id=store.id, poll_interval_ms=20
        )
        assert done.status == ("completed" if i % 2 == 0 else "failed"), done.last_error
        ids.append(done.id)
    batch_ids = [_upload(alpha, *(BAD if i % 2 == 0 else GOOD)) for i in range(4)]
    batch = alpha.vector_stores.file_batches.create_and_poll(
        store.id, file_ids=batch_ids, poll_interval_ms=20
    )
    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.failed) == (2, 2)
    # The batch's files are added in the order named; the store then holds the batch's after its own.
    assert _batch_files(alpha, store.id, batch.id, order="asc") == Page(batch_ids, False)
    assert _store_files(alpha, store.id, order="asc") == Page(ids + batch_ids, False)
    return Store(store.id, ids, batch.id, batch_ids)


def test_store_file_cursor_outside_status_filter_pages_from_it(alpha: OpenAI, store: Store) -> None:
    s = store.store_id
    c0, f1, c2, f3, c4 = store.ids
    b0, b1, b2, b3 = store.batch_ids  # failed, completed, failed, completed
    assert _store_files(alpha, s, filter="completed", after=f3) == Page([c2, c0], False)
    assert _store_files(alpha, s, filter="completed", after=f3, limit=1) == Page([c2], True)
    assert _store_files(alpha, s, filter="completed", after=f1) == Page([c0], False)
    assert _store_files(alpha, s, filter="completed", before=f1) == Page([b3, b1, c4, c2], False)
    assert _store_files(alpha, s, filter="completed", before=f1, limit=2) == Page([c4, c2], True)
    assert _store_files(alpha, s, filter="completed", after=b0, before=f1) == Page([c4, c2], False)
    assert _store_files(alpha, s, filter="completed", order="asc", after=f1) == Page([c2, c4, b1, b3], False)
    assert _store_files(alpha, s, filter="completed", order="asc", after=f1, limit=1) == Page([c2], True)
    assert _store_files(alpha, s, filter="completed", order="asc", before=f3) == Page([c0, c2], False)
    assert _store_files(alpha, s, filter="completed", order="asc", before=b0, limit=1) == Page([c4], True)
    assert _store_files(alpha, s, filter="failed", after=c4) == Page([f3, f1], False)
    assert _store_files(alpha, s, filter="failed", after=c2) == Page([f1], False)
    assert _store_files(alpha, s, filter="failed", order="asc", after=c2) == Page([f3, b0, b2], False)
    assert _store_files(alpha, s, filter="failed", order="asc", before=b1) == Page([f1, f3, b0], False)
    assert _store_files(alpha, s, filter="in_progress", after=c2) == Page([], False)


def test_batch_file_cursor_outside_status_filter_pages_from_it(alpha: OpenAI, store: Store) -> None:
    s, batch = store.store_id, store.batch_id
    b0, b1, b2, b3 = store.batch_ids  # failed, completed, failed, completed
    assert _batch_files(alpha, s, batch, filter="completed", after=b2) == Page([b1], False)
    assert _batch_files(alpha, s, batch, filter="completed", before=b0) == Page([b3, b1], False)
    assert _batch_files(alpha, s, batch, filter="completed", before=b0, limit=1) == Page([b1], True)
    assert _batch_files(alpha, s, batch, filter="completed", order="asc", after=b0) == Page([b1, b3], False)
    assert _batch_files(alpha, s, batch, filter="completed", order="asc", before=b2) == Page([b1], False)
    assert _batch_files(alpha, s, batch, filter="failed", after=b3) == Page([b2, b0], False)
    assert _batch_files(alpha, s, batch, filter="failed", after=b3, limit=1) == Page([b2], True)
    assert _batch_files(alpha, s, batch, filter="failed", order="asc", after=b1) == Page([b2], False)
    assert _batch_files(alpha, s, batch, filter="failed", order="asc", before=b3) == Page([b0, b2], False)


def test_store_file_cursor_outside_the_collection_is_refused(
    alpha: OpenAI, beta: OpenAI, store: Store
) -> None:
    s, batch = store.store_id, store.batch_id
    files, batches = alpha.vector_stores.files, alpha.vector_stores.file_batches
    # One of the tenant's files, but in no vector store; one in another store; one of another tenant.
    loose = _upload(alpha, *GOOD)
    elsewhere = alpha.vector_stores.create(name="elsewhere", file_ids=[_upload(alpha, *GOOD)])
    in_other_store = files.list(elsewhere.id).data[0].id
    their_store = beta.vector_stores.create(name="beta's", file_ids=[_upload(beta, *GOOD)])
    theirs = beta.vector_stores.files.list(their_store.id).data[0].id
    for cursor in (loose, in_other_store, theirs, "file-doesnotexist"):
        for param in ("after", "before"):
            page: dict[str, Any] = {param: cursor}
            _refused(partial(files.list, s, filter="completed", **page), param)
            _refused(partial(files.list, s, **page), param)
            _refused(partial(batches.list_files, batch, vector_store_id=s, filter="failed", **page), param)
    # The batch is the collection of its files: a file of the same store outside the batch is no cursor.
    outside_batch = store.ids[2]
    _refused(
        lambda: batches.list_files(batch, vector_store_id=s, filter="completed", after=outside_batch), "after"
    )
    _refused(lambda: batches.list_files(batch, vector_store_id=s, before=outside_batch), "before")
