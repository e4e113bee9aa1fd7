"""The bundled static embedder, the OpenAI-compatible one (against a real HTTP server), and the choice."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from assistd.config import Settings  # noqa: E402
from assistd.errors import UpstreamError  # noqa: E402
from assistd.retrieval.embeddings import (  # noqa: E402
    MODEL_DIR,
    StaticEmbedder,
    UpstreamEmbedder,
    build_embedder,
)
from fake_upstream import FakeUpstream, fake_embedding  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# The static model
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder()


def test_static_model_identity(static: StaticEmbedder) -> None:
    metadata = json.loads((MODEL_DIR / "model.json").read_text())
    assert static.dimensions == metadata["dimensions"] == 256
    assert static.name == f"static:{metadata['name']}:{metadata['sha256'][:12]}"
    # The artifact stays small enough to ship inside the package.
    assert sum(path.stat().st_size for path in MODEL_DIR.iterdir()) < 16_500_000


def test_static_vectors_are_unit_rows_and_empty_texts_zero(static: StaticEmbedder) -> None:
    texts = ["How do I reset my password?", "", "   ", "\x00\x01", "Das Wetter ist heute schön."]
    vectors = asyncio.run(static.embed(texts))
    assert vectors.shape == (5, 256)
    assert vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert norms[0] == pytest.approx(1.0, abs=1e-5)
    assert norms[4] == pytest.approx(1.0, abs=1e-5)
    assert not vectors[1:4].any()


def test_static_paraphrases_rank_above_unrelated_text(static: StaticEmbedder) -> None:
    queries = [
        "How can I change my account password?",
        "What time does the train to Paris leave?",
        "The recipe needs two cups of flour and an egg.",
    ]
    passages = [
        "Baking instructions: mix flour with eggs and bake for twenty minutes.",
        "To reset your password, open account settings and choose security.",
        "Departures: the Paris express leaves the station at 9:40 every morning.",
    ]
    q = asyncio.run(static.embed(queries))
    p = asyncio.run(static.embed(passages))
    best = (q @ p.T).argmax(axis=1)
    assert best.tolist() == [1, 2, 0]
    # No word in common: only meaning connects these.
    queries = ["Where can I get my automobile fixed?", "Which stocks should I invest in?"]
    passages = [
        "Shares and bonds are traded on the exchange.",
        "The cat sleeps on the sofa.",
        "The mechanic repairs cars and engines at the garage.",
    ]
    scores = static.encode(queries) @ static.encode(passages).T
    assert scores.argmax(axis=1).tolist() == [2, 0]
    assert scores[0, 2] > scores[0, 1] + 0.2


def test_static_vectors_are_the_mean_of_token_rows(static: StaticEmbedder) -> None:
    # A reference computed from the whole-text tokenizer, without the word cache.
    table = np.load(MODEL_DIR / "embeddings.npy").astype(np.float32)
    tokenizer = static.tokenizer.tokenizer
    unknown = tokenizer.token_to_id("[UNK]")
    texts = [
        "Punctuation, (brackets) and 'quotes'... [PAD] literal",
        "form\x0cfeed unit\x1fsep next\x85line no\u00a0break zero\u200bwidth",
        "東京タワー 🚀 Ångström naïve",
        "z" * 150 + " tail",
    ]
    ours = static.encode(texts)
    for text, vector in zip(texts, ours, strict=True):
        ids = [i for i in tokenizer.encode(text, add_special_tokens=False).ids if i != unknown]
        expected = table[ids].mean(axis=0)
        expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(vector, expected, atol=1e-5)


def test_static_long_texts_are_cut_like_model2vec(static: StaticEmbedder) -> None:
    metadata = json.loads((MODEL_DIR / "model.json").read_text())
    limit = metadata["max_length"]
    head = " ".join(["alpha"] * limit)
    tail = " ".join(["omega"] * 2000)
    vectors = static.encode([head, head + " " + tail])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_static_embedding_runs_off_the_event_loop(static: StaticEmbedder) -> None:
    async def scenario() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        vectors = await static.embed(["some passage about retrieval"] * 3000)
        done.set()
        await task
        return ticks, len(vectors)

    ticks, rows = asyncio.run(scenario())
    assert rows == 3000
    assert ticks > 1  # the loop kept running while the batch was embedded


# ---------------------------------------------------------------------------------------------------
# An OpenAI-compatible service
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream(models=["fake-embedder"]).start()
    try:
        yield server
    finally:
        server.stop()


def test_upstream_batches_keeps_order_and_skips_empty_texts(fake: FakeUpstream) -> None:
    fake.reset()
    texts = [f"passage number {i}" for i in range(600)]
    texts[5] = ""
    embedder = UpstreamEmbedder(fake.base_url, "sk-test-key", "fake-embedder")
    assert embedder.dimensions == 0  # unknown model: learned from the first answer

    async def scenario() -> np.ndarray:
        try:
            return await embedder.embed(texts)
        finally:
            await embedder.close()

    vectors = asyncio.run(scenario())
    assert embedder.dimensions == 8
    assert vectors.shape == (600, 8)
    sizes = sorted(len(request["input"]) for request in fake.embedding_requests)
    assert sizes == [87, 256, 256]  # 599 texts: the empty one is never sent
    assert all(request["model"] == "fake-embedder" for request in fake.embedding_requests)
    for i in (0, 6, 300, 599):
        np.testing.assert_allclose(vectors[i], fake_embedding(texts[i]), atol=1e-6)
    assert not vectors[5].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 6, 599]], axis=1), 1.0, atol=1e-6)


def test_upstream_requests_stay_under_the_size_limit(fake: FakeUpstream) -> None:
    fake.reset()
    texts = [f"{i} " + "word " * 30_000 for i in range(10)]  # 150,000 characters each
    embedder = UpstreamEmbedder(fake.base_url, None, "fake-embedder")

    async def scenario() -> np.ndarray:
        try:
            return await embedder.embed(texts)
        finally:
            await embedder.close()

    vectors = asyncio.run(scenario())
    assert vectors.shape == (10, 8)
    sizes = [sum(len(text) for text in request["input"]) for request in fake.embedding_requests]
    assert len(sizes) == 5
    assert max(sizes) <= 400_000


def test_upstream_answer_overrides_a_known_models_size(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # A proxy serving something else under an OpenAI model's name.
    embedder = UpstreamEmbedder(fake.base_url, None, "text-embedding-3-small")
    assert embedder.dimensions == 1536

    async def scenario() -> np.ndarray:
        try:
            return await embedder.embed(["hello"])
        finally:
            await embedder.close()

    assert asyncio.run(scenario()).shape == (1, 8)
    assert embedder.dimensions == 8
    assert "returns 8 dimensions, not the expected 1536" in caplog.text


def test_upstream_start_learns_dimensions(fake: FakeUpstream) -> None:
    embedder = UpstreamEmbedder(fake.base_url, None, "fake-embedder")

    async def scenario() -> None:
        await embedder.start()
        await embedder.close()

    asyncio.run(scenario())
    assert embedder.dimensions == 8
    assert UpstreamEmbedder(fake.base_url, None, "text-embedding-3-small").dimensions == 1536


class _Script:
    """What the scripted server answers next: (status, headers, body) tuples, then successes."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


@pytest.fixture
def scripted() -> Iterator[tuple[str, _Script]]:
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with script.lock:
                script.requests.append(body)
                reply = script.replies.pop(0) if script.replies else None
            if reply is None:
                data = [
                    {"object": "embedding", "index": i, "embedding": [3.0, 4.0]}
                    for i in range(len(body["input"]))
                ]
                reply = (200, {}, {"object": "list", "data": data, "model": body["model"], "usage": {}})
            status, headers, payload = reply
            raw = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def test_upstream_retries_rate_limits_and_server_errors(
    scripted: tuple[str, _Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = scripted
    script.replies = [
        (429, {"retry-after-ms": "20"}, _error("slow down")),
        (503, {}, _error("overloaded")),
    ]
    embedder = UpstreamEmbedder(url, "sk-very-secret-key", "m", retry_base=0.01)
    caplog.set_level(logging.WARNING)

    async def scenario() -> np.ndarray:
        try:
            return await embedder.embed(["hello"])
        finally:
            await embedder.close()

    vectors = asyncio.run(scenario())
    np.testing.assert_allclose(vectors, [[0.6, 0.8]], atol=1e-6)  # normalised from (3, 4)
    assert len(script.requests) == 3
    assert "retrying" in caplog.text
    assert "sk-very-secret-key" not in caplog.text


def test_upstream_gives_up_with_an_error_that_hides_the_key(
    scripted: tuple[str, _Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = scripted
    key = "sk-very-secret-key"
    script.replies = [(401, {}, _error(f"Incorrect API key provided: {key}"))]
    embedder = UpstreamEmbedder(url, key, "m", retry_base=0.01)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        try:
            await embedder.embed(["hello"])
        finally:
            await embedder.close()

    with pytest.raises(UpstreamError) as raised:
        asyncio.run(scenario())
    assert "HTTP 401" in raised.value.message
    assert key not in raised.value.message
    assert key not in caplog.text
    assert len(script.requests) == 1  # a 401 is not retried

    script.requests.clear()
    script.replies = [(500, {}, _error("down"))] * 3
    embedder = UpstreamEmbedder(url, key, "m", max_retries=2, retry_base=0.01)
    with pytest.raises(UpstreamError, match="kept failing after retries"):
        asyncio.run(scenario())
    assert len(script.requests) == 3


# ---------------------------------------------------------------------------------------------------
# The choice
# ---------------------------------------------------------------------------------------------------


def test_build_embedder_gives_the_static_model_when_asked() -> None:
    settings = Settings(_env_file=None, embeddings_base_url=None, local_embeddings="static")  # type: ignore[call-arg]
    first = build_embedder(settings)
    assert isinstance(first, StaticEmbedder)
    assert build_embedder(settings) is first  # loaded once


def test_build_embedder_uses_the_configured_service() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        embeddings_base_url="https://user:pw@embed.example.com:8443/v1/?token=abc",
        embeddings_api_key=SecretStr("sk-secret"),
        embeddings_model="text-embedding-3-large",
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, UpstreamEmbedder)
    assert embedder.name == "upstream:embed.example.com:8443/v1:text-embedding-3-large"
    assert embedder.dimensions == 3072
    assert embedder.tokenizer is StaticEmbedder().tokenizer
    asyncio.run(embedder.close())
