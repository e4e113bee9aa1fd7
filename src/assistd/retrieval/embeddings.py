"""Text to vectors: a bundled local model (the MiniLM transformer by default, or the fast static model), or
any OpenAI-compatible ``/v1/embeddings``.

Every embedder returns float32 rows of unit length (an empty text gives a zero row), so a dot product is
a cosine. ``name`` identifies the vectors' space: cached embeddings are keyed by it, and it changes
whenever vectors would (another model, another artifact, another service).

The static model (``model/``, made by ``scripts/distill_embedder.py``) is a table of one vector per
token of all-MiniLM-L6-v2's vocabulary; a text's vector is the mean of its tokens' rows, as model2vec's
``StaticModel.encode`` computes it, with only ``tokenizers`` and numpy at run time.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import openai

from ..config import Settings
from ..errors import UpstreamError
from ..llm.retry import RetryPolicy
from .chunking import WordTokenizer, word_tokenizer
from .transformer import TransformerEmbedder

__all__ = [
    "MODEL_DIR",
    "Embedder",
    "StaticEmbedder",
    "UpstreamEmbedder",
    "build_embedder",
]

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "model"

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Identifies the vector space; part of embedding cache keys."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of the vectors. An upstream model assistd does not know reports 0 until ``start`` or the
        first ``embed`` has asked the service."""
        ...

    @property
    def tokenizer(self) -> WordTokenizer:
        """What passages are sized with (``chunking.chunk_text``)."""
        ...

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """(len(texts), dimensions) float32, each row of unit length or zero for a text without tokens."""
        ...

    async def start(self) -> None:
        """Loads the model or learns the service's dimensions now rather than on first use."""
        ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------------
# The bundled static model
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StaticModel:
    vectors: Vectors  # (vocabulary, dimensions) float32
    unknown_id: int | None
    max_length: int | None
    # model2vec cuts a text to max_length * median token length characters before tokenizing it.
    max_chars: int | None
    normalize: bool


class StaticEmbedder:
    """The bundled model. Its table is read on first use and shared by every instance of one directory."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        self._dir = model_dir
        metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        self._name = f"static:{metadata['name']}:{str(metadata['sha256'])[:12]}"
        self._dimensions = int(metadata["dimensions"])
        #: The model's id on ``/v1/embeddings`` and ``/v1/models``.
        self.model_id = str(metadata["name"])
        #: Tokens of a text the vector is made of (``encode`` drops the rest): ``/v1/embeddings`` refuses
        #: longer inputs, as OpenAI does past its models' limit.
        self.max_input_tokens: int | None = metadata.get("max_length")

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def tokenizer(self) -> WordTokenizer:
        return word_tokenizer(self._dir)

    async def start(self) -> None:
        await asyncio.to_thread(self._model)

    async def close(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return await asyncio.to_thread(self.encode, list(texts))

    def encode(self, texts: Sequence[str]) -> Vectors:
        """``embed`` without the thread: for callers already off the event loop."""
        model = self._model()
        tokenizer = self.tokenizer
        if model.max_chars is not None:
            texts = [text[: model.max_chars] for text in texts]
        words = [tokenizer.split(text) for text in texts]
        # One lookup for the whole batch: its texts share most of their words.
        ids_of_words = tokenizer.word_ids(list(itertools.chain.from_iterable(words)))
        out = np.zeros((len(texts), self._dimensions), np.float32)
        position = 0
        for row, text_words in enumerate(words):
            pieces = ids_of_words[position : position + len(text_words)]
            position += len(text_words)
            ids = np.fromiter(itertools.chain.from_iterable(pieces), np.intp)
            if model.max_length is not None:
                ids = ids[: model.max_length]
            if model.unknown_id is not None:
                ids = ids[ids != model.unknown_id]
            if len(ids):
                out[row] = model.vectors[ids].sum(axis=0) / len(ids)
        if model.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _model(self) -> _StaticModel:
        return _static_model(self._dir)


# One tokenizer (and its word cache) and one table per model directory, however many embedders use them.
_load_lock = threading.RLock()
_models: dict[Path, _StaticModel] = {}


def _static_model(model_dir: Path) -> _StaticModel:
    model = _models.get(model_dir)
    if model is None:
        with _load_lock:
            model = _models.get(model_dir)
            if model is None:
                model = _load_static(model_dir)
                _models[model_dir] = model
    return model


def _load_static(model_dir: Path) -> _StaticModel:
    metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    tokenizer = word_tokenizer(model_dir).tokenizer
    vectors = np.load(model_dir / "embeddings.npy", allow_pickle=False).astype(np.float32)
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if len(vocabulary) != len(vectors) or vectors.shape[1] != int(metadata["dimensions"]):
        raise RuntimeError(f"the static embedding model in {model_dir} is inconsistent")
    max_length = metadata.get("max_length")
    median = int(np.median([len(token) for token, _ in vocabulary]))
    unknown = tokenizer.token_to_id("[UNK]")
    return _StaticModel(
        vectors=vectors,
        unknown_id=unknown,
        max_length=max_length,
        max_chars=None if max_length is None else max_length * median,
        normalize=bool(metadata.get("normalize", True)),
    )


# ----------------------------------------------------------------------------------------------------
# An OpenAI-compatible embeddings service
# ----------------------------------------------------------------------------------------------------

# Per request: OpenAI takes at most 2,048 inputs and 300,000 tokens in all; these stay well below both
# (400,000 characters are fewer than 300,000 tokens for any text but pathological ones).
MAX_INPUTS_PER_REQUEST = 256
MAX_CHARS_PER_REQUEST = 400_000

_KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class UpstreamEmbedder:
    """``/v1/embeddings`` of any OpenAI-compatible service, retried like chat completions are.

    Passages are still sized with the bundled model's tokenizer, so their token counts only approximate
    the service's own.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
        retry_budget: float = 60.0,
        retry_base: float = 0.5,
        max_concurrency: int = 8,
        tokenizer_dir: Path = MODEL_DIR,
    ) -> None:
        self._api_key = api_key or ""
        self._model = model
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout
        )
        self._retry = RetryPolicy(
            "The embeddings service", self._api_key, max_retries, retry_budget, retry_base
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tokenizer_dir = tokenizer_dir
        # OpenAI's models' sizes are known up front; the service's first answer is what counts, though
        # (a proxy may serve another model under the same name).
        self._dimensions = _KNOWN_DIMENSIONS.get(model, 0)
        self._confirmed = False
        # The service without credentials or query: enough to tell two services apart, never a secret.
        parts = urlsplit(base_url)
        self._name = f"upstream:{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
        self._name += f"{parts.path.rstrip('/')}:{model}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def tokenizer(self) -> WordTokenizer:
        return word_tokenizer(self._tokenizer_dir)

    async def start(self) -> None:
        if not self._dimensions:
            await self.embed(["dimensions"])

    async def close(self) -> None:
        await self._client.close()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        batches = _batches(texts)
        results = await asyncio.gather(*(self._request([texts[i] for i in batch]) for batch in batches))
        if results and not self._confirmed:
            if self._dimensions and results[0].shape[1] != self._dimensions:
                log.warning(
                    "embeddings model %s returns %d dimensions, not the expected %d",
                    self._model,
                    results[0].shape[1],
                    self._dimensions,
                )
            self._dimensions = results[0].shape[1]
            self._confirmed = True
        out = np.zeros((len(texts), self._dimensions), np.float32)
        for batch, vectors in zip(batches, results, strict=True):
            if vectors.shape[1] != self._dimensions:
                raise UpstreamError(
                    f"The embeddings service returned vectors of {vectors.shape[1]} dimensions, "
                    f"expected {self._dimensions}."
                )
            out[batch] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    async def _request(self, inputs: list[str]) -> Vectors:
        attempts = self._retry.start()
        while True:
            try:
                async with self._slots:
                    response = await self._client.embeddings.create(
                        input=inputs, model=self._model, encoding_format="float"
                    )
                data = sorted(response.data, key=lambda item: item.index)
                if len(data) != len(inputs):
                    raise UpstreamError(
                        f"The embeddings service returned {len(data)} vectors for {len(inputs)} inputs."
                    )
                return np.array([item.embedding for item in data], dtype=np.float32)
            except openai.OpenAIError as exc:
                await attempts.failed(exc)


def _batches(texts: Sequence[str]) -> list[list[int]]:
    """Indexes of ``texts`` grouped into requests. Blank texts are left out: OpenAI rejects empty inputs,
    and they get a zero row, as with the static model."""
    batches: list[list[int]] = []
    current: list[int] = []
    chars = 0
    for index, text in enumerate(texts):
        if not text.strip():
            continue
        if current and (len(current) == MAX_INPUTS_PER_REQUEST or chars + len(text) > MAX_CHARS_PER_REQUEST):
            batches.append(current)
            current, chars = [], 0
        current.append(index)
        chars += len(text)
    if current:
        batches.append(current)
    return batches


# ----------------------------------------------------------------------------------------------------


def build_embedder(settings: Settings) -> Embedder:
    """The configured service when ``ASSISTD_EMBEDDINGS_BASE_URL`` is set, else the local model that
    ``ASSISTD_LOCAL_EMBEDDINGS`` names: all-MiniLM-L6-v2 ("minilm") or its static distillation ("static")."""
    local = settings.local_embeddings.strip().lower()
    if local not in _LOCAL_EMBEDDERS:
        # Checked even when a service is set: a misspelt setting is an error, not a silent fallback.
        raise ValueError(
            f"ASSISTD_LOCAL_EMBEDDINGS must be one of {', '.join(map(repr, _LOCAL_EMBEDDERS))}, "
            f"not {settings.local_embeddings!r}"
        )
    if settings.embeddings_base_url:
        key = settings.embeddings_api_key.get_secret_value() if settings.embeddings_api_key else None
        return UpstreamEmbedder(
            settings.embeddings_base_url,
            key,
            settings.embeddings_model,
            timeout=settings.upstream_timeout_seconds,
            max_retries=settings.upstream_max_retries,
            retry_budget=settings.upstream_retry_budget_seconds,
            retry_base=settings.upstream_retry_base_seconds,
            max_concurrency=min(settings.upstream_max_concurrency, 8),
        )
    return _LOCAL_EMBEDDERS[local]()


@functools.cache
def _static_embedder() -> StaticEmbedder:
    return StaticEmbedder()


@functools.cache
def _transformer_embedder() -> TransformerEmbedder:
    return TransformerEmbedder()


_LOCAL_EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "minilm": _transformer_embedder,
    "static": _static_embedder,
}
