"""Metadata limits as properties, on a real server, for every object that takes metadata, at creation and at
update: up to 16 pairs, keys up to 64 characters, values up to 512. Inside the limits metadata is accepted
and read back as sent; past any of them the request is a 400 naming ``metadata`` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzz import announce, properties
from server import KEYS, AssistdServer

PAIRS, KEY, VALUE = 16, 64, 512

# Any character a JSON string carries but NUL (which PostgreSQL text cannot hold: refused apart, by
# api/nul_guard.py) and lone surrogates (not UTF-8).
CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")


def keys(low: int = 1, high: int = KEY) -> st.SearchStrategy[str]:
    return st.text(CHARS, min_size=low, max_size=high)


def values(low: int = 0, high: int = VALUE) -> st.SearchStrategy[str]:
    return st.text(CHARS, min_size=low, max_size=high)


INSIDE = st.dictionaries(keys(), values(), max_size=PAIRS)
AT_THE_LIMITS = {f"{i:02d}".ljust(KEY, "k"): "v" * VALUE for i in range(PAIRS)}


@st.composite
def outside(draw: st.DrawFn) -> dict[str, str]:
    """Metadata past one limit at least: too many pairs, a key too long or a value too long."""
    base = draw(st.dictionaries(keys(), values(), max_size=PAIRS - 1))
    way = draw(st.sampled_from(["pairs", "key", "value"]))
    if way == "pairs":
        more = draw(st.dictionaries(keys(), values(high=8), min_size=PAIRS + 1 - len(base), max_size=24))
        base.update(more)
        if len(base) <= PAIRS:
            base.update({f"extra-{i}": "" for i in range(PAIRS + 1 - len(base))})
    elif way == "key":
        base[draw(keys(KEY + 1, KEY + 200))] = draw(values(high=16))
    else:
        base[draw(keys(high=16))] = draw(values(VALUE + 1, VALUE + 600))
    return base


def _new_thread(http: httpx.Client) -> str:
    return str(http.post("/threads", json={}).json()["id"])


# Each object that takes metadata: where it is created (a new thread's messages for a message), with what.
KINDS: dict[str, tuple[Callable[[httpx.Client], str], dict[str, Any]]] = {
    "assistants": (lambda http: "/assistants", {"model": "fake-model"}),
    "threads": (lambda http: "/threads", {}),
    "messages": (lambda http: f"/threads/{_new_thread(http)}/messages", {"role": "user", "content": "Hi"}),
    "vector_stores": (lambda http: "/vector_stores", {"name": "meta"}),
}


@pytest.fixture(scope="module")
def http(server: AssistdServer) -> Iterator[httpx.Client]:
    announce()
    headers = {"Authorization": f"Bearer {KEYS[0]}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        yield client


def _create(
    http: httpx.Client, kind: str, metadata: dict[str, str], path: str | None = None
) -> tuple[str, httpx.Response]:
    collection, body = KINDS[kind]
    path = path or collection(http)
    return path, http.post(path, json={**body, "metadata": metadata})


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "metadata", error


@pytest.mark.parametrize("kind", list(KINDS))
@properties(max_examples=10)
@given(metadata=INSIDE, update=INSIDE)
@example(metadata=AT_THE_LIMITS, update={}).via("the limits exactly")
def test_metadata_inside_the_limits_is_kept_as_sent(
    http: httpx.Client, kind: str, metadata: dict[str, str], update: dict[str, str]
) -> None:
    path, created = _create(http, kind, metadata)
    assert created.status_code == 200, created.text
    assert created.json()["metadata"] == metadata
    url = f"{path}/{created.json()['id']}"
    assert http.get(url).json()["metadata"] == metadata
    updated = http.post(url, json={"metadata": update})
    assert updated.status_code == 200, updated.text
    assert updated.json()["metadata"] == update
    assert http.get(url).json()["metadata"] == update


@pytest.mark.parametrize("kind", list(KINDS))
@properties(max_examples=10)
@given(metadata=outside())
def test_metadata_past_a_limit_is_refused_naming_metadata(
    http: httpx.Client, kind: str, metadata: dict[str, str]
) -> None:
    path, created = _create(http, kind, {"ok": "yes"})
    assert created.status_code == 200, created.text
    url = f"{path}/{created.json()['id']}"
    _refused(http.post(url, json={"metadata": metadata}))
    assert http.get(url).json()["metadata"] == {"ok": "yes"}, "a refused update wrote nothing"
    before = http.get(path).json()["data"] if kind != "threads" else None
    _, refused = _create(http, kind, metadata, path)
    _refused(refused)
    if before is not None:
        assert http.get(path).json()["data"] == before, "a refused creation wrote nothing"
