"""Cursor pagination as properties, on a real server: for a random number of messages in a thread and a
random limit, order, ``after`` and ``before``, a page holds exactly the objects of the window the cursors
bound, in order, ``has_more`` says whether the window holds more, and ``first_id``/``last_id`` are the ends of
``data``; walking pages with ``after`` sees every object once, in order.

Messages made together in one thread share their ``created_at``; their content says their creation order,
which is the order of ``order=asc``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import announce, properties
from server import KEYS, AssistdServer


@pytest.fixture(scope="module")
def http(server: AssistdServer) -> Iterator[httpx.Client]:
    announce()
    headers = {"Authorization": f"Bearer {KEYS[0]}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        yield client


def _thread(http: httpx.Client, count: int) -> list[str]:
    """A new thread of ``count`` messages; their ids in creation order."""
    messages = [{"role": "user", "content": f"m{i}"} for i in range(count)]
    thread = http.post("/threads", json={"messages": messages})
    assert thread.status_code == 200, thread.text
    thread_id = thread.json()["id"]
    listed = _page(http, thread_id, {"limit": 100, "order": "asc"}) if count else {"data": []}
    by_content = {item["content"][0]["text"]["value"]: item["id"] for item in listed["data"]}
    assert sorted(by_content) == sorted(m["content"] for m in messages)
    return [thread_id, *(by_content[f"m{i}"] for i in range(count))]


def _page(http: httpx.Client, thread_id: str, params: dict[str, Any]) -> dict[str, Any]:
    response = http.get(f"/threads/{thread_id}/messages", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["object"] == "list"
    assert isinstance(body["has_more"], bool)
    ids = [item["id"] for item in body["data"]]
    assert body["first_id"] == (ids[0] if ids else None)
    assert body["last_id"] == (ids[-1] if ids else None)
    assert len(ids) <= params.get("limit", 20)
    return body


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, dict[str, Any], int | None, int | None]:
    count = draw(st.integers(0, 30))
    params: dict[str, Any] = {}
    if draw(st.booleans()):
        params["limit"] = draw(st.integers(1, 100))
    if draw(st.booleans()):
        params["order"] = draw(st.sampled_from(["asc", "desc"]))
    after = draw(st.none() | st.integers(0, count - 1)) if count else None
    before = draw(st.none() | st.integers(0, count - 1)) if count else None
    return count, params, after, before


@properties(max_examples=25)
@given(window=windows())
def test_a_page_is_the_window_its_cursors_bound(
    http: httpx.Client, window: tuple[int, dict[str, Any], int | None, int | None]
) -> None:
    count, params, after, before = window
    thread_id, *ids = _thread(http, count)
    ordered = ids if params.get("order") == "asc" else ids[::-1]
    # The window: what lies past `after` and short of `before`, in the order asked.
    start = ordered.index(ids[after]) + 1 if after is not None else 0
    stop = ordered.index(ids[before]) if before is not None else len(ordered)
    inside = ordered[start:stop]
    limit = params.get("limit", 20)
    if after is not None:
        params["after"] = ids[after]
    if before is not None:
        params["before"] = ids[before]
    body = _page(http, thread_id, params)
    # From `after` the page is the window's first objects; from `before` alone, the ones nearest it.
    expected = inside[:limit] if after is not None or before is None else inside[-limit:]
    assert [item["id"] for item in body["data"]] == expected
    assert body["has_more"] is (len(inside) > limit)


@properties(max_examples=20)
@given(count=st.integers(0, 30), limit=st.integers(1, 12), order=st.sampled_from(["asc", "desc"]))
def test_walking_with_after_sees_every_object_once_in_order(
    http: httpx.Client, count: int, limit: int, order: str
) -> None:
    thread_id, *ids = _thread(http, count)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit, "order": order}
    for _ in range(count + 1):
        body = _page(http, thread_id, params)
        seen += [item["id"] for item in body["data"]]
        if not body["has_more"]:
            break
        assert len(body["data"]) == limit, "a page short of its limit has no more after it"
        params["after"] = body["last_id"]
    assert seen == (ids if order == "asc" else ids[::-1])
