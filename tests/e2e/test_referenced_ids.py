"""Ids a request body names (vector stores, files, the assistant of a run) must be the caller's own.

Another tenant's id is answered exactly as an id that does not exist: 400 ``invalid_request_error`` naming the
param (404 for a run's ``assistant_id``, as OpenAI answers), the same message with only the id differing,
and nothing written. The same requests naming the tenant's own ids succeed. Each direction is tried: beta
naming alpha's ids, and alpha naming beta's.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import FileObject, VectorStore
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch
from pydantic import BaseModel

from server import KEYS, AssistdServer
from wire import check

Kind = Literal["file", "vector store", "assistant"]

# Well-formed ids that name nothing, in any tenant.
UNKNOWN: dict[Kind, str] = {
    "file": "file-NoSuchFile0000000000000",
    "vector store": "vs_nosuchstore0000000000000",
    "assistant": "asst_nosuchassistant0000000",
}


@dataclass
class Tenant:
    """One key's client and the objects it owns."""

    name: str
    key: str
    client: OpenAI
    file: FileObject
    extra_file: FileObject
    store: VectorStore
    assistant: Assistant
    thread: Thread

    def own(self, kind: Kind) -> str:
        return {"file": self.file.id, "vector store": self.store.id, "assistant": self.assistant.id}[kind]


def _tenant(server: AssistdServer, key: str, name: str) -> Tenant:
    client = OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=30)
    files = [
        client.files.create(
            file=(f"{name}-{n}.txt", io.BytesIO(f"{name}'s notes {n}".encode())), purpose="assistants"
        )
        for n in range(2)
    ]
    return Tenant(
        name=name,
        key=key,
        client=client,
        file=files[0],
        extra_file=files[1],
        store=client.vector_stores.create(name=f"{name}'s store"),
        assistant=client.beta.assistants.create(model="fake-model", name=f"{name}'s"),
        thread=client.beta.threads.create(messages=[{"role": "user", "content": "hello"}]),
    )


@pytest.fixture
def tenants(server: AssistdServer) -> Iterator[tuple[Tenant, Tenant]]:
    alpha = _tenant(server, KEYS[0], "alpha")
    beta = _tenant(server, KEYS[1], "beta")
    yield alpha, beta
    alpha.client.close()
    beta.client.close()


@dataclass
class Case:
    """A request by ``actor`` that names ``ref`` (an id of the kind ``kind``) at ``param``."""

    name: str
    kind: Kind
    param: str
    call: Callable[[Tenant, str], Any]
    answer: type[BaseModel]
    # Whether the accepted request keeps the id where the tenant can read it back (see ``_echo``).
    kept: bool = True


# Request fragments are Any: each endpoint's SDK signature has its own TypedDicts for the same shapes.
def _attachment(file_id: str, tool: str = "code_interpreter") -> Any:
    return {"file_id": file_id, "tools": [{"type": tool}]}


def _image(file_id: str) -> Any:
    return {"type": "image_file", "image_file": {"file_id": file_id}}


def _search(store_id: str) -> Any:
    return {"file_search": {"vector_store_ids": [store_id]}}


def _code(*file_ids: str) -> Any:
    return {"code_interpreter": {"file_ids": list(file_ids)}}


def _helper(file_id: str) -> Any:
    """The ``vector_stores`` helper: a store to make from the files named."""
    return {"file_search": {"vector_stores": [{"file_ids": [file_id]}]}}


CASES = [
    # assistants
    Case(
        "assistants.create vector store",
        "vector store",
        "tool_resources.file_search.vector_store_ids[0]",
        lambda t, ref: t.client.beta.assistants.create(model="fake-model", tool_resources=_search(ref)),
        Assistant,
    ),
    Case(
        "assistants.create code_interpreter file",
        "file",
        "tool_resources.code_interpreter.file_ids[1]",
        lambda t, ref: t.client.beta.assistants.create(
            model="fake-model", tool_resources=_code(t.extra_file.id, ref)
        ),
        Assistant,
    ),
    Case(
        "assistants.create vector_stores helper file",
        "file",
        "tool_resources.file_search.vector_stores[0].file_ids[0]",
        lambda t, ref: t.client.beta.assistants.create(model="fake-model", tool_resources=_helper(ref)),
        Assistant,
    ),
    Case(
        "assistants.update vector store",
        "vector store",
        "tool_resources.file_search.vector_store_ids[0]",
        lambda t, ref: t.client.beta.assistants.update(t.assistant.id, tool_resources=_search(ref)),
        Assistant,
    ),
    Case(
        "assistants.update code_interpreter file",
        "file",
        "tool_resources.code_interpreter.file_ids[0]",
        lambda t, ref: t.client.beta.assistants.update(t.assistant.id, tool_resources=_code(ref)),
        Assistant,
    ),
    # threads
    Case(
        "threads.create vector store",
        "vector store",
        "tool_resources.file_search.vector_store_ids[0]",
        lambda t, ref: t.client.beta.threads.create(tool_resources=_search(ref)),
        Thread,
    ),
    Case(
        "threads.create code_interpreter file",
        "file",
        "tool_resources.code_interpreter.file_ids[0]",
        lambda t, ref: t.client.beta.threads.create(tool_resources=_code(ref)),
        Thread,
    ),
    Case(
        "threads.create vector_stores helper file",
        "file",
        "tool_resources.file_search.vector_stores[0].file_ids[0]",
        lambda t, ref: t.client.beta.threads.create(tool_resources=_helper(ref)),
        Thread,
    ),
    Case(
        "threads.create message attachment",
        "file",
        "messages[1].attachments[0].file_id",
        lambda t, ref: t.client.beta.threads.create(
            messages=[
                {"role": "user", "content": "first"},
                {"role": "user", "content": "second", "attachments": [_attachment(ref)]},
            ]
        ),
        Thread,
    ),
    Case(
        "threads.create message image_file",
        "file",
        "messages[0].content[1].image_file.file_id",
        lambda t, ref: t.client.beta.threads.create(
            messages=[{"role": "user", "content": [{"type": "text", "text": "look"}, _image(ref)]}]
        ),
        Thread,
    ),
    Case(
        "threads.update vector store",
        "vector store",
        "tool_resources.file_search.vector_store_ids[0]",
        lambda t, ref: t.client.beta.threads.update(t.thread.id, tool_resources=_search(ref)),
        Thread,
    ),
    Case(
        "threads.update code_interpreter file",
        "file",
        "tool_resources.code_interpreter.file_ids[0]",
        lambda t, ref: t.client.beta.threads.update(t.thread.id, tool_resources=_code(ref)),
        Thread,
    ),
    # messages
    Case(
        "messages.create code_interpreter attachment",
        "file",
        "attachments[0].file_id",
        lambda t, ref: t.client.beta.threads.messages.create(
            t.thread.id, role="user", content="see", attachments=[_attachment(ref)]
        ),
        Message,
    ),
    Case(
        "messages.create file_search attachment",
        "file",
        "attachments[1].file_id",
        lambda t, ref: t.client.beta.threads.messages.create(
            t.thread.id,
            role="user",
            content="see",
            attachments=[_attachment(t.extra_file.id), _attachment(ref, "file_search")],
        ),
        Message,
    ),
    Case(
        "messages.create image_file",
        "file",
        "content[0].image_file.file_id",
        lambda t, ref: t.client.beta.threads.messages.create(
            t.thread.id,
            role="user",
            content=[_image(ref)],
        ),
        Message,
    ),
    # runs
    Case(
        "runs.create additional_messages attachment",
        "file",
        "additional_messages[0].attachments[0].file_id",
        lambda t, ref: t.client.beta.threads.runs.create(
            t.thread.id,
            assistant_id=t.assistant.id,
            additional_messages=[{"role": "user", "content": "see", "attachments": [_attachment(ref)]}],
        ),
        Run,
    ),
    Case(
        "create_and_run thread vector store",
        "vector store",
        "thread.tool_resources.file_search.vector_store_ids[0]",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=t.assistant.id, thread={"tool_resources": _search(ref)}
        ),
        Run,
    ),
    Case(
        "create_and_run thread code_interpreter file",
        "file",
        "thread.tool_resources.code_interpreter.file_ids[0]",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=t.assistant.id, thread={"tool_resources": _code(ref)}
        ),
        Run,
    ),
    Case(
        "create_and_run thread vector_stores helper file",
        "file",
        "thread.tool_resources.file_search.vector_stores[0].file_ids[0]",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=t.assistant.id, thread={"tool_resources": _helper(ref)}
        ),
        Run,
    ),
    Case(
        "create_and_run thread message attachment",
        "file",
        "thread.messages[0].attachments[0].file_id",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=t.assistant.id,
            thread={"messages": [{"role": "user", "content": "see", "attachments": [_attachment(ref)]}]},
        ),
        Run,
    ),
    Case(
        "create_and_run run vector store (used as the thread's)",
        "vector store",
        "tool_resources.file_search.vector_store_ids[0]",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=t.assistant.id, tool_resources=_search(ref)
        ),
        Run,
    ),
    Case(
        "create_and_run run code_interpreter file (beside the thread's own)",
        "file",
        "tool_resources.code_interpreter.file_ids[0]",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=t.assistant.id,
            thread={"tool_resources": _code(t.extra_file.id)},
            tool_resources=_code(ref),
        ),
        Run,
        kept=False,  # the thread's own tool_resources win over the run's
    ),
    # vector stores
    Case(
        "vector_stores.create file",
        "file",
        "file_ids[1]",
        lambda t, ref: t.client.vector_stores.create(file_ids=[t.extra_file.id, ref]),
        VectorStore,
    ),
    Case(
        "vector_stores.files.create",
        "file",
        "file_id",
        lambda t, ref: t.client.vector_stores.files.create(t.store.id, file_id=ref),
        VectorStoreFile,
    ),
    Case(
        "vector_stores.file_batches.create file_ids",
        "file",
        "file_ids[1]",
        lambda t, ref: t.client.vector_stores.file_batches.create(
            t.store.id, file_ids=[t.extra_file.id, ref]
        ),
        VectorStoreFileBatch,
    ),
    Case(
        "vector_stores.file_batches.create files",
        "file",
        "files[0].file_id",
        lambda t, ref: t.client.vector_stores.file_batches.create(
            t.store.id, extra_body={"files": [{"file_id": ref}]}
        ),
        VectorStoreFileBatch,
    ),
    # the assistant of a run: a path-like reference, answered 404 as a missing assistant always was
    Case(
        "runs.create assistant_id",
        "assistant",
        "assistant_id",
        lambda t, ref: t.client.beta.threads.runs.create(
            t.thread.id, assistant_id=ref, additional_messages=[{"role": "user", "content": "more"}]
        ),
        Run,
    ),
    Case(
        "create_and_run assistant_id",
        "assistant",
        "assistant_id",
        lambda t, ref: t.client.beta.threads.create_and_run(
            assistant_id=ref, thread={"messages": [{"role": "user", "content": "hi"}]}
        ),
        Run,
    ),
]


def _ids(page: Any) -> list[str]:
    return [item.id for item in page.data]


def _snapshot(server: AssistdServer, actor: Tenant, owner: Tenant) -> dict[str, Any]:
    """Everything the refused requests could have written, as the actor and the owner of the ids see it."""
    threads = httpx.get(
        f"{server.base_url}/threads",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {actor.key}"},
    )
    assert threads.status_code == 200, threads.text
    c = actor.client
    return {
        "assistants": _ids(c.beta.assistants.list(limit=100)),
        "assistant": c.beta.assistants.retrieve(actor.assistant.id).model_dump(),
        "threads": [x["id"] for x in threads.json()["data"]],
        "thread": c.beta.threads.retrieve(actor.thread.id).model_dump(),
        "messages": _ids(c.beta.threads.messages.list(actor.thread.id, limit=100)),
        "runs": _ids(c.beta.threads.runs.list(actor.thread.id, limit=100)),
        "stores": _ids(c.vector_stores.list(limit=100)),
        "store files": _ids(c.vector_stores.files.list(actor.store.id, limit=100)),
        "owner's store": owner.client.vector_stores.retrieve(owner.store.id).model_dump(),
        "owner's store files": _ids(owner.client.vector_stores.files.list(owner.store.id, limit=100)),
    }


def _refusal(case: Case, actor: Tenant, ref: str) -> dict[str, Any]:
    error_class = openai.NotFoundError if case.kind == "assistant" else openai.BadRequestError
    with pytest.raises(error_class) as info:
        case.call(actor, ref)
    body = info.value.response.json()
    return dict(body)


def _expected(case: Case, ref: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"No {case.kind} found with id '{ref}'.",
            "type": "invalid_request_error",
            "param": case.param,
            "code": None,
        }
    }


def _other_tenants(tenants: tuple[Tenant, Tenant], direction: str) -> tuple[Tenant, Tenant]:
    alpha, beta = tenants
    return (beta, alpha) if direction == "beta names alpha's" else (alpha, beta)


DIRECTIONS = ["beta names alpha's", "alpha names beta's"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_foreign_ids_are_refused_as_unknown_ones_and_write_nothing(
    server: AssistdServer, tenants: tuple[Tenant, Tenant], direction: str
) -> None:
    actor, owner = _other_tenants(tenants, direction)
    before = _snapshot(server, actor, owner)
    for case in CASES:
        foreign, unknown = owner.own(case.kind), UNKNOWN[case.kind]
        refused_foreign = _refusal(case, actor, foreign)
        refused_unknown = _refusal(case, actor, unknown)
        # The same answer but for the id: nothing tells the other tenant's object from no object.
        assert refused_foreign == _expected(case, foreign), case.name
        assert refused_unknown == _expected(case, unknown), case.name
        assert _snapshot(server, actor, owner) == before, case.name


def _finished(client: OpenAI, run: Run) -> Run:
    done = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=50)
    assert done.status == "completed", done
    return done


def _store_files(client: OpenAI, resources: Any) -> list[str]:
    """The files of the stores ``resources`` name (where the vector_stores helper put its files)."""
    search = resources.file_search if resources is not None else None
    stores = (search.vector_store_ids or []) if search is not None else []
    return [file_id for store in stores for file_id in _ids(client.vector_stores.files.list(store))]


def _echo(client: OpenAI, answer: BaseModel) -> str:
    """What the accepted request made, as the tenant reads it back: the answer, with the messages of a run's
    or thread's thread, the files of a store or batch, and the files of stores the helper made."""
    parts = [answer.model_dump_json()]
    resources = getattr(answer, "tool_resources", None)
    if isinstance(answer, Run | Thread):
        thread = client.beta.threads.retrieve(answer.thread_id if isinstance(answer, Run) else answer.id)
        resources = thread.tool_resources
        parts.append(thread.model_dump_json())
        parts += [m.model_dump_json() for m in client.beta.threads.messages.list(thread.id).data]
    elif isinstance(answer, VectorStore):
        parts += _ids(client.vector_stores.files.list(answer.id))
    elif isinstance(answer, VectorStoreFileBatch):
        parts += _ids(
            client.vector_stores.file_batches.list_files(answer.id, vector_store_id=answer.vector_store_id)
        )
    parts += _store_files(client, resources)
    return "\n".join(parts)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_the_tenants_own_ids_are_accepted(tenants: tuple[Tenant, Tenant], direction: str) -> None:
    actor, _ = _other_tenants(tenants, direction)
    for case in CASES:
        # A thread and a store of its own per request: a run holds its thread (messages cannot join it
        # meanwhile), and a file already in a store does not join a batch.
        c = actor.client
        fresh = replace(actor, thread=c.beta.threads.create(), store=c.vector_stores.create())
        own = fresh.own(case.kind)
        answer = check(case.answer, case.call(fresh, own))
        if isinstance(answer, Run):
            answer = _finished(actor.client, answer)
        assert (own in _echo(actor.client, answer)) == case.kept, case.name
