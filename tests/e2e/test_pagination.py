"""Cursor pagination of assistants and messages: limit, order, after, before, has_more, first/last ids,
and the SDK's auto-pagination.

Assistant lists span the whole tenant, so these tests use a server of their own whose tenant holds
exactly the assistants created here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.pagination import SyncCursorPage
from openai.types.beta import Assistant
from openai.types.beta.threads import Message

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from wire import check, raw

COUNT = 7


@pytest.fixture(scope="module")
def pager(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[tuple[OpenAI, list[str]]]:
    server = start_server(tmp_path_factory, databases, fake)
    try:
        with make_client(server) as client:
            ids = [client.beta.assistants.create(model="fake-model", name=f"a{i}").id for i in range(COUNT)]
            yield client, ids
    finally:
        server.stop()


def _assistants(client: OpenAI, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = raw(client.beta.assistants.with_raw_response.list(**params))
    check(SyncCursorPage[Assistant], body)
    if body["data"]:
        check(SyncCursorPage[Assistant], body, "ListAssistantsResponse")
    for item in body["data"]:
        check(Assistant, item, "AssistantObject")
    _check_ends(body)
    return body


def _messages(client: OpenAI, thread_id: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = raw(client.beta.threads.messages.with_raw_response.list(thread_id, **params))
    check(SyncCursorPage[Message], body)
    if body["data"]:
        check(SyncCursorPage[Message], body, "ListMessagesResponse")
    for item in body["data"]:
        check(Message, item, "MessageObject")
    _check_ends(body)
    return body


def _check_ends(body: dict[str, Any]) -> None:
    assert body["object"] == "list"
    if body["data"]:
        assert body["first_id"] == body["data"][0]["id"]
        assert body["last_id"] == body["data"][-1]["id"]
    else:
        assert body["first_id"] is None and body["last_id"] is None
        assert body["has_more"] is False


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["data"]]


def _bad_request(exc: openai.APIStatusError, param: str) -> None:
    assert exc.status_code == 400
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert param in body["error"]["message"] or "cursor" in body["error"]["message"]


def test_limit_bounds(pager: tuple[OpenAI, list[str]]) -> None:
    client, ids = pager
    assert _ids(_assistants(client, limit=1)) == [ids[-1]]
    everything = _assistants(client, limit=100)
    assert _ids(everything) == ids[::-1]
    assert everything["has_more"] is False
    assert _ids(_assistants(client)) == ids[::-1], "the default limit (20) covers all seven"
    for limit in (0, 101, -1):
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.assistants.list(limit=limit)
        _bad_request(info.value, "limit")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.list(extra_query={"limit": "lots"})
    _bad_request(info.value, "limit")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.list(order="sideways")  # type: ignore[arg-type]
    _bad_request(info.value, "order")


def test_walk_forward_with_after(pager: tuple[OpenAI, list[str]]) -> None:
    client, ids = pager
    newest_first = ids[::-1]
    for order, expected in (("desc", newest_first), ("asc", ids)):
        seen: list[str] = []
        pages: list[bool] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3, "order": order}
            if after:
                params["after"] = after
            page = _assistants(client, **params)
            seen += _ids(page)
            pages.append(page["has_more"])
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == expected, order
        assert pages == [True, True, False], order


def test_walk_backward_with_before(pager: tuple[OpenAI, list[str]]) -> None:
    client, ids = pager
    # desc: "before" X lists the items ahead of X in desc order (newer ones), the nearest first page.
    page = _assistants(client, limit=3, before=ids[0])
    assert _ids(page) == [ids[3], ids[2], ids[1]]
    assert page["has_more"] is True
    page = _assistants(client, limit=3, before=page["first_id"])
    assert _ids(page) == [ids[6], ids[5], ids[4]]
    assert page["has_more"] is False
    page = _assistants(client, limit=3, before=ids[6])
    assert _ids(page) == []

    page = _assistants(client, limit=3, order="asc", before=ids[6])
    assert _ids(page) == [ids[3], ids[4], ids[5]]
    assert page["has_more"] is True
    page = _assistants(client, limit=3, order="asc", before=page["first_id"])
    assert _ids(page) == [ids[0], ids[1], ids[2]]
    assert page["has_more"] is False


def test_after_and_before_bound_a_window(pager: tuple[OpenAI, list[str]]) -> None:
    client, ids = pager
    window = _assistants(client, after=ids[6], before=ids[2])
    assert _ids(window) == [ids[5], ids[4], ids[3]]
    assert window["has_more"] is False
    window = _assistants(client, limit=2, after=ids[6], before=ids[2])
    assert _ids(window) == [ids[5], ids[4]]
    assert window["has_more"] is True
    window = _assistants(client, order="asc", after=ids[1], before=ids[4])
    assert _ids(window) == [ids[2], ids[3]]
    past_the_end = _assistants(client, after=ids[0])
    assert past_the_end["data"] == [] and past_the_end["has_more"] is False


def test_sdk_auto_pagination_yields_every_item_once(pager: tuple[OpenAI, list[str]]) -> None:
    client, ids = pager
    assert [a.id for a in client.beta.assistants.list(limit=2)] == ids[::-1]
    assert [a.id for a in client.beta.assistants.list(limit=2, order="asc")] == ids
    assert [a.id for a in client.beta.assistants.list(limit=1, after=ids[3])] == [ids[2], ids[1], ids[0]]
    first = client.beta.assistants.list(limit=3)
    assert [len(page.data) for page in first.iter_pages()] == [3, 3, 1]


def test_unknown_cursor_is_refused(pager: tuple[OpenAI, list[str]]) -> None:
    client, ids = pager
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.list(after="asst_doesnotexist")
    _bad_request(info.value, "after")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.list(before="asst_doesnotexist")
    _bad_request(info.value, "before")
    # A deleted object is no cursor any more.
    gone = client.beta.assistants.create(model="fake-model").id
    client.beta.assistants.delete(gone)
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.list(after=gone)
    _bad_request(info.value, "after")
    assert _ids(_assistants(client, limit=100)) == ids[::-1]


def test_message_pagination(client: OpenAI) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"m{i}"} for i in range(5)])
    ids = _ids(_messages(client, thread.id, order="asc"))
    assert len(ids) == 5

    for limit in (0, 101):
        with pytest.raises(openai.BadRequestError) as info:
            client.beta.threads.messages.list(thread.id, limit=limit)
        _bad_request(info.value, "limit")
    assert _ids(_messages(client, thread.id, limit=100)) == ids[::-1]

    page = _messages(client, thread.id, limit=2)
    assert _ids(page) == [ids[4], ids[3]] and page["has_more"] is True
    page = _messages(client, thread.id, limit=2, after=page["last_id"])
    assert _ids(page) == [ids[2], ids[1]] and page["has_more"] is True
    page = _messages(client, thread.id, limit=2, after=page["last_id"])
    assert _ids(page) == [ids[0]] and page["has_more"] is False
    # ... and back again.
    page = _messages(client, thread.id, limit=2, before=ids[0])
    assert _ids(page) == [ids[2], ids[1]] and page["has_more"] is True
    page = _messages(client, thread.id, limit=2, before=page["first_id"])
    assert _ids(page) == [ids[4], ids[3]] and page["has_more"] is False

    page = _messages(client, thread.id, limit=2, order="asc", after=ids[1])
    assert _ids(page) == [ids[2], ids[3]] and page["has_more"] is True
    page = _messages(client, thread.id, limit=2, order="asc", before=ids[2])
    assert _ids(page) == [ids[0], ids[1]] and page["has_more"] is False

    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=2)] == ids[::-1]
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=2, order="asc")] == ids

    # A message of another thread is no cursor in this one.
    other = client.beta.threads.create(messages=[{"role": "user", "content": "elsewhere"}])
    foreign = client.beta.threads.messages.list(other.id).data[0].id
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.list(thread.id, after=foreign)
    _bad_request(info.value, "after")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.list(thread.id, before="msg_nope")
    _bad_request(info.value, "before")
