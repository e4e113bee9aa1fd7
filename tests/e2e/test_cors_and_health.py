"""/healthz, /v1/models, and CORS for browser clients when ``cors_origins`` is set."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import Model

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from server import KEYS, AssistdServer
from wire import check, check_schema, raw

ORIGIN = "http://app.example"
SDK_HEADERS = "authorization,content-type,openai-beta,x-stainless-os"


@pytest.fixture(scope="module")
def cors_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    server = start_server(tmp_path_factory, databases, fake, cors_origins=ORIGIN)
    yield server
    server.stop()


def test_healthz(server: AssistdServer) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # No key needed to ask whether the server is up.
    assert "authorization" not in response.request.headers


def test_models_lists_the_upstreams_models(client: OpenAI) -> None:
    body = raw(client.models.with_raw_response.list())
    check_schema(body, "ListModelsResponse")
    assert body["object"] == "list"
    for item in body["data"]:
        check(Model, item, "Model")
        assert item["object"] == "model"
    ids = [item["id"] for item in body["data"]]
    assert "fake-model" in ids and "fake-model-large" in ids
    assert sorted(m.id for m in client.models.list()) == sorted(ids)

    one = raw(client.models.with_raw_response.retrieve("fake-model-large"))
    check(Model, one, "Model")
    assert one["id"] == "fake-model-large"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    error = info.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "model_not_found"


def test_models_need_a_key(server: AssistdServer) -> None:
    with make_client(server, "sk-nope") as bad, pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_cors_preflight_allows_the_sdk_headers(cors_server: AssistdServer) -> None:
    response = httpx.options(
        f"{cors_server.base_url}/assistants",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": SDK_HEADERS,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed_headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(SDK_HEADERS.split(",")) <= allowed_headers
    allowed_methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "DELETE"} <= allowed_methods

    for path in ("/threads/thread_x/runs/run_x/submit_tool_outputs", "/threads/thread_x/messages/msg_x"):
        preflight = httpx.options(
            f"{cors_server.base_url}{path}",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN


def test_cors_headers_on_responses(cors_server: AssistdServer) -> None:
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {KEYS[0]}"}
    created = httpx.post(f"{cors_server.base_url}/assistants", json={"model": "fake-model"}, headers=headers)
    assert created.status_code == 200
    assert created.headers["access-control-allow-origin"] == ORIGIN
    listed = httpx.get(f"{cors_server.base_url}/assistants", headers=headers)
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    # A browser must be able to read the error bodies too.
    missing = httpx.get(f"{cors_server.base_url}/assistants/asst_nope", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == ORIGIN
    unauthorised = httpx.get(f"{cors_server.base_url}/assistants", headers={"Origin": ORIGIN})
    assert unauthorised.status_code == 401
    assert unauthorised.headers["access-control-allow-origin"] == ORIGIN
    # The poll helpers' header is readable from a browser.
    exposed = created.headers.get("access-control-expose-headers", "").lower()
    assert "openai-poll-after-ms" in exposed
    assert "x-ratelimit-remaining-requests" in exposed


def test_cors_refuses_other_origins(cors_server: AssistdServer, server: AssistdServer) -> None:
    preflight = httpx.options(
        f"{cors_server.base_url}/assistants",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.get(
        f"{cors_server.base_url}/assistants",
        headers={"Origin": "http://evil.example", "Authorization": f"Bearer {KEYS[0]}"},
    )
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers
    # Without cors_origins the server sends no CORS headers at all.
    default = httpx.get(
        f"{server.base_url}/assistants", headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEYS[0]}"}
    )
    assert default.status_code == 200
    assert "access-control-allow-origin" not in default.headers


def test_sdk_works_against_the_cors_server(cors_server: AssistdServer) -> None:
    with make_client(cors_server) as sdk:
        assistant = sdk.beta.assistants.create(model="fake-model", name="cors")
        assert sdk.beta.assistants.retrieve(assistant.id).name == "cors"
