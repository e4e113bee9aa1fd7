"""Vector stores, their files and batches, ingestion of each supported format, and search, via the SDK."""

from __future__ import annotations

import io
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types import VectorStore, VectorStoreDeleted
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch, VectorStoreFileDeleted

from samples_files import corrupt_pdf, make_docx, make_pdf
from wire import api_error, check, check_schema, raw

FACTS = {
    "notes.md": "# Field notes\n\nThe lighthouse keeper on Skerry Island feeds a heron called Bartholomew.\n",
    "page.html": (
        "<html><head><style>p {color: red}</style><script>var x = 'hidden';</script></head>"
        "<body><h1>Orchard</h1><p>The orchard grows seventeen varieties of quince.</p></body></html>"
    ),
}


def _upload(client: OpenAI, name: str, data: bytes | str) -> str:
    content = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(name, io.BytesIO(content)), purpose="assistants").id


def _store(client: OpenAI, **kwargs: Any) -> VectorStore:
    return check(
        VectorStore, raw(client.vector_stores.with_raw_response.create(**kwargs)), "VectorStoreObject"
    )


def _ingest(client: OpenAI, store_id: str, name: str, data: bytes | str, **kwargs: Any) -> VectorStoreFile:
    content = data.encode() if isinstance(data, str) else data
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store_id, file=(name, io.BytesIO(content)), poll_interval_ms=50, **kwargs
    )
    return check(VectorStoreFile, done, "VectorStoreFileObject")


def _search(client: OpenAI, store_id: str, query: str, **kwargs: Any) -> list[dict[str, Any]]:
    response = client.vector_stores.with_raw_response.search(store_id, query=query, **kwargs)
    body = raw(response)
    check_schema(body, "VectorStoreSearchResultsPage")
    assert body["object"] == "vector_store.search_results.page"
    return list(body["data"])


def test_vector_store_lifecycle(client: OpenAI) -> None:
    created = _store(
        client,
        name="handbook",
        metadata={"team": "docs"},
        expires_after={"anchor": "last_active_at", "days": 3},
    )
    assert created.id.startswith("vs_")
    assert created.status == "completed" and created.file_counts.total == 0
    assert created.expires_at == created.last_active_at + 3 * 86400

    fetched = check(
        VectorStore, raw(client.vector_stores.with_raw_response.retrieve(created.id)), "VectorStoreObject"
    )
    assert fetched.name == "handbook" and fetched.metadata == {"team": "docs"}

    renamed = client.vector_stores.update(created.id, name="manual", metadata={"team": "ops"})
    assert renamed.name == "manual" and renamed.metadata == {"team": "ops"}

    listed = [store.id for store in client.vector_stores.list(limit=100)]
    assert created.id in listed

    deleted = check(
        VectorStoreDeleted,
        raw(client.vector_stores.with_raw_response.delete(created.id)),
        "DeleteVectorStoreResponse",
    )
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError) as caught:
        client.vector_stores.retrieve(created.id)
    api_error(caught.value, 404, "vector_store_id")


def test_each_format_ingests_and_is_searchable(client: OpenAI) -> None:
    store = _store(client, name="formats")
    documents: dict[str, bytes | str] = {
        **FACTS,
        "report.pdf": make_pdf("The observatory recorded a comet named Valdrisk in the spring."),
        "memo.docx": make_docx(["Quarterly memo", "The canteen now serves cardamom buns on Fridays."]),
        "data.csv": "city,mascot\nTrondheim,walrus\nPorto,lynx\n",
        "config.json": '{"service": {"name": "ferry-tracker", "owner": "Ingrid"}}',
        "tool.py": "def ferry_schedule():\n    '''Ferries leave the harbour every ninety minutes.'''\n",
    }
    ids = {}
    for name, data in documents.items():
        done = _ingest(client, store.id, name, data)
        assert done.status == "completed", (name, done.last_error)
        assert done.usage_bytes > 0
        ids[name] = done.id
    questions = {
        "notes.md": "What is the name of the heron?",
        "page.html": "How many varieties of quince grow in the orchard?",
        "report.pdf": "Which comet did the observatory record?",
        "memo.docx": "What does the canteen serve on Fridays?",
        "data.csv": "Which city has the walrus mascot?",
        "config.json": "Who owns the ferry-tracker service?",
        "tool.py": "How often do ferries leave the harbour?",
    }
    for name, question in questions.items():
        results = _search(client, store.id, question, max_num_results=3)
        assert results and results[0]["file_id"] == ids[name], (name, results[:2])
        assert results[0]["filename"] == name
        assert 0 <= results[0]["score"] <= 1
    # Script and style text never reaches the index.
    page = client.vector_stores.files.content(file_id=ids["page.html"], vector_store_id=store.id)
    text = "".join(part.text or "" for part in page)
    assert "quince" in text and "hidden" not in text and "color" not in text

    refreshed = client.vector_stores.retrieve(store.id)
    assert refreshed.file_counts.completed == len(documents) and refreshed.file_counts.total == len(documents)
    assert refreshed.usage_bytes > 0 and refreshed.status == "completed"


def test_unparseable_files_fail_with_a_reason(client: OpenAI) -> None:
    store = _store(client)
    broken = _ingest(client, store.id, "broken.pdf", corrupt_pdf())
    assert broken.status == "failed"
    assert broken.last_error is not None and broken.last_error.code == "invalid_file"
    assert broken.last_error.message

    unsupported = _ingest(client, store.id, "archive.xyz", b"\x00\x01binary")
    assert unsupported.status == "failed"
    assert unsupported.last_error is not None and unsupported.last_error.code == "unsupported_file"

    failed = client.vector_stores.files.list(store.id, filter="failed")
    assert {f.id for f in failed} == {broken.id, unsupported.id}
    assert client.vector_stores.retrieve(store.id).file_counts.failed == 2


def test_vector_store_files_endpoints(client: OpenAI) -> None:
    store = _store(client)
    first = _ingest(
        client, store.id, "a.md", "Alpha file about turnips.", attributes={"lang": "en", "year": 2021}
    )
    second = _ingest(
        client, store.id, "b.md", "Beta file about turnips.", attributes={"lang": "fr", "year": 2024}
    )
    assert first.attributes == {"lang": "en", "year": 2021}
    assert first.chunking_strategy is not None and first.chunking_strategy.type == "static"

    listed = client.vector_stores.files.list(store.id, order="asc", limit=1)
    assert [f.id for f in listed.data] == [first.id] and listed.has_more
    page = client.vector_stores.files.list(store.id, order="asc", after=first.id)
    assert [f.id for f in page.data] == [second.id]

    # Searched once before the update, so that the update has to reach an index already in memory.
    only_fr = _search(client, store.id, "turnips", filters={"type": "eq", "key": "lang", "value": "fr"})
    assert [(r["file_id"], r["attributes"]) for r in only_fr] == [(second.id, {"lang": "fr", "year": 2024})]
    updated = client.vector_stores.files.update(
        file_id=second.id, vector_store_id=store.id, attributes={"lang": "de", "year": 2025}
    )
    assert updated.attributes == {"lang": "de", "year": 2025}

    assert _search(client, store.id, "turnips", filters={"type": "eq", "key": "lang", "value": "fr"}) == []
    only_de = _search(client, store.id, "turnips", filters={"type": "eq", "key": "lang", "value": "de"})
    assert [(r["file_id"], r["attributes"]) for r in only_de] == [(second.id, {"lang": "de", "year": 2025})]
    recent = _search(client, store.id, "turnips", filters={"type": "gte", "key": "year", "value": 2022})
    assert [r["file_id"] for r in recent] == [second.id]
    either = _search(
        client,
        store.id,
        "turnips",
        filters={
            "type": "or",
            "filters": [
                {"type": "eq", "key": "lang", "value": "en"},
                {"type": "in", "key": "lang", "value": ["de"]},
            ],
        },
    )
    assert {r["file_id"] for r in either} == {first.id, second.id}
    assert all(r["attributes"] for r in either)

    deleted = check(
        VectorStoreFileDeleted,
        raw(client.vector_stores.files.with_raw_response.delete(file_id=first.id, vector_store_id=store.id)),
        "DeleteVectorStoreFileResponse",
    )
    assert deleted.deleted
    assert [r["file_id"] for r in _search(client, store.id, "turnips")] == [second.id]
    # The file itself stays; deleting it removes it from every store.
    assert client.files.retrieve(first.id).id == first.id
    client.files.delete(second.id)
    assert _search(client, store.id, "turnips") == []
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0


def test_file_batches(client: OpenAI) -> None:
    store = _store(client)
    files = [
        (f"part{i}.txt", io.BytesIO(f"Batch part {i} mentions the word zeppelin{i}.".encode()))
        for i in range(4)
    ]
    batch = client.vector_stores.file_batches.upload_and_poll(store.id, files=files, poll_interval_ms=50)
    check(VectorStoreFileBatch, batch, "VectorStoreFileBatchObject")
    assert batch.id.startswith("vsfb_") and batch.status == "completed"
    assert batch.file_counts.completed == 4 and batch.file_counts.total == 4

    in_batch = client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=store.id)
    assert len(in_batch.data) == 4
    hits = _search(client, store.id, "zeppelin2")
    assert hits and hits[0]["filename"] == "part2.txt"

    extra = client.files.create(file=("late.txt", io.BytesIO(b"late file")), purpose="assistants")
    second = client.vector_stores.file_batches.create(
        store.id, files=[{"file_id": extra.id, "attributes": {"late": True}}]
    )
    cancelled = client.vector_stores.file_batches.cancel(batch_id=second.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    fetched = client.vector_stores.file_batches.retrieve(batch_id=second.id, vector_store_id=store.id)
    assert fetched.status == "cancelled"
    assert fetched.file_counts.total == 1


def test_create_with_file_ids_and_static_chunking(client: OpenAI) -> None:
    sentences = " ".join(f"Sentence {i} is about item{i}." for i in range(400))
    file_id = _upload(client, "long.txt", sentences)
    store = client.vector_stores.create(
        file_ids=[file_id],
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
        },
    )
    member = client.vector_stores.files.poll(file_id, vector_store_id=store.id, poll_interval_ms=50)
    assert member.status == "completed"
    assert member.chunking_strategy is not None
    assert member.chunking_strategy.model_dump()["static"] == {
        "max_chunk_size_tokens": 100,
        "chunk_overlap_tokens": 20,
    }
    hits = _search(client, store.id, "item377", max_num_results=50)
    assert len(hits) == 1 and len(hits[0]["content"]) > 1  # many small chunks, grouped under their file
    assert "item377" in hits[0]["content"][0]["text"]


def test_bad_input_names_the_parameter(client: OpenAI) -> None:
    store = _store(client)
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.search(store.id, query="x", max_num_results=51)
    api_error(caught.value, 400, "max_num_results")
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.search(store.id, query="   ")
    api_error(caught.value, 400, "query")
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.files.create(store.id, file_id="file-missing")
    api_error(caught.value, 400, "file_id")
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 80},
            }
        )
    api_error(caught.value, 400, "chunking_strategy.static.chunk_overlap_tokens")
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.file_batches.create(store.id, file_ids=["file-nope"])
    api_error(caught.value, 400, "file_ids[0]")


def test_tenants_never_see_each_others_files_or_stores(client: OpenAI, other_client: OpenAI) -> None:
    store = _store(client)
    mine = _ingest(client, store.id, "secret.md", "The vault combination is 8812.")
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[mine.id])
    calls = [
        lambda: other_client.vector_stores.retrieve(store.id),
        lambda: other_client.vector_stores.update(store.id, name="x"),
        lambda: other_client.vector_stores.delete(store.id),
        lambda: other_client.vector_stores.search(store.id, query="vault"),
        lambda: other_client.vector_stores.files.list(store.id),
        lambda: other_client.vector_stores.files.retrieve(file_id=mine.id, vector_store_id=store.id),
        lambda: other_client.vector_stores.files.update(
            file_id=mine.id, vector_store_id=store.id, attributes={}
        ),
        lambda: other_client.vector_stores.files.delete(file_id=mine.id, vector_store_id=store.id),
        lambda: other_client.vector_stores.files.content(file_id=mine.id, vector_store_id=store.id),
        lambda: other_client.vector_stores.file_batches.retrieve(batch_id=batch.id, vector_store_id=store.id),
        lambda: other_client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=store.id),
        lambda: other_client.vector_stores.file_batches.list_files(
            batch_id=batch.id, vector_store_id=store.id
        ),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    assert store.id not in [s.id for s in other_client.vector_stores.list(limit=100)]
    # Another tenant's file cannot be put into one's own store either.
    theirs = other_client.vector_stores.create(name="theirs")
    with pytest.raises(openai.BadRequestError) as caught:
        other_client.vector_stores.files.create(theirs.id, file_id=mine.id)
    api_error(caught.value, 400, "file_id")
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 1


def test_a_store_searched_while_it_grows_finds_old_and_new_files(client: OpenAI) -> None:
    store = _store(client)
    animals = ["walrus", "heron", "lynx", "otter", "badger", "marmot"]
    ids = {}
    for animal in animals:
        ids[animal] = _ingest(
            client, store.id, f"{animal}.md", f"The keeper's favourite animal is the {animal}."
        ).id
        # Each search after a change reads only what was added (and merges what was read before).
        for seen in ids:
            hits = _search(client, store.id, f"favourite {seen}", max_num_results=1)
            assert hits[0]["file_id"] == ids[seen], (seen, hits)
    client.vector_stores.files.delete(file_id=ids["lynx"], vector_store_id=store.id)
    assert all(hit["file_id"] != ids["lynx"] for hit in _search(client, store.id, "favourite lynx"))
