"""The 5xx the fuzzing (test_fuzz.py) found, each as the exact request that answered it, now a 4xx with
OpenAI's error body naming the parameter. Newest last; docs/reliability.md lists them with their dates."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest

from server import KEYS, AssistdServer


@pytest.fixture(scope="module")
def http(server: AssistdServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEYS[0]}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        yield client


def _error(response: httpx.Response, status: int, param: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return str(error["message"])


def test_file_batch_naming_an_empty_file_id(http: httpx.Client) -> None:
    # 2026-12-04, POST /vector_stores/{id}/file_batches {"file_ids": [""]}: each id was validated again
    # as a BatchFile inside the handler, past the request's validation (500).
    store = http.post("/vector_stores", json={}).json()["id"]
    for body in ({"file_ids": [""]}, {"file_ids": ["file-unknown", ""]}):
        response = http.post(f"/vector_stores/{store}/file_batches", json=body)
        message = _error(response, 400, "file_ids[0]")
        assert "No file found" in message
    # And the store holds no batch file: nothing was written.
    assert http.get(f"/vector_stores/{store}/files").json()["data"] == []


@pytest.mark.parametrize("target", ["file", "store", "store_file"])
def test_deleting_while_ingestion_completes(http: httpx.Client, target: str) -> None:
    # 2026-12-04, on PostgreSQL: DELETE /files/{id}, /vector_stores/{id} and /vector_stores/{id}/files/{id}
    # right after the file was added to the store deadlocked with its ingestion completing (they took the
    # ingest job's row first, ingestion last), a 503. A race: the same requests, some times over (the fuzzing
    # met it about once in 30 tries).
    for _ in range(30):
        upload = {"file": ("a.txt", io.BytesIO(b"One line of text to ingest."))}
        file_id = http.post("/files", files=upload, data={"purpose": "assistants"}).json()["id"]
        store = http.post("/vector_stores", json={"file_ids": [file_id]}).json()["id"]
        batch = http.post(f"/vector_stores/{store}/file_batches", json={"file_ids": [file_id]})
        assert batch.status_code == 200, batch.text
        path = {
            "file": f"/files/{file_id}",
            "store": f"/vector_stores/{store}",
            "store_file": f"/vector_stores/{store}/files/{file_id}",
        }[target]
        deleted = http.delete(path)
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["deleted"] is True
        assert http.get(path).status_code == 404
