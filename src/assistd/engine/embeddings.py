"""``POST /v1/embeddings``: the bundled embedding model that file search uses, or the upstream's.

The local model is the retrieval ``Embedder`` the app already holds (no second copy of it is loaded):
its id is served here, any other id goes to the upstream as the client sent it. Token arrays are the
model's own WordPiece ids: they are decoded with its tokenizer and embedded as the text they spell.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError
from ..llm.registry import ProviderRegistry
from ..llm.types import ModelInfo
from ..protocol.embeddings import EmbeddingCreateParams
from ..retrieval.embeddings import Embedder, StaticEmbedder, Vectors
from ..retrieval.transformer import TransformerEmbedder

__all__ = ["MAX_REQUEST_TOKENS", "EmbeddingService", "LocalEmbedder"]

# OpenAI's limit on the tokens of all the inputs of one request.
MAX_REQUEST_TOKENS = 300_000

LocalEmbedder = StaticEmbedder | TransformerEmbedder


@dataclass(frozen=True)
class _Prepared:
    texts: list[str]
    tokens: int


class EmbeddingService:
    """Serves ``/v1/embeddings`` with ``embedder`` when it is a bundled model, else only by proxy."""

    def __init__(self, embedder: Embedder, providers: ProviderRegistry) -> None:
        # An embeddings service (ASSISTD_EMBEDDINGS_BASE_URL) is retrieval's, not a model served here.
        self._local = embedder if isinstance(embedder, LocalEmbedder) else None
        self._providers = providers

    def models(self) -> list[ModelInfo]:
        """The embedding models served here, for ``/v1/models``."""
        return [] if self._local is None else [ModelInfo(id=self._local.model_id, owned_by="assistd")]

    async def create(self, params: EmbeddingCreateParams) -> bytes:
        """The JSON body of OpenAI's ``CreateEmbeddingResponse`` for ``params``."""
        model = self._local
        if model is None or params.model != model.model_id:
            # Only what the client sent: the upstream applies its own defaults.
            answer = await self._providers.embeddings(params.model_dump(exclude_unset=True))
            return json.dumps(answer, separators=(",", ":")).encode()
        if params.dimensions is not None and params.dimensions != model.dimensions:
            raise InvalidRequestError(
                f"The model '{model.model_id}' makes vectors of {model.dimensions} dimensions and cannot "
                f"shorten them (it is not a Matryoshka model): 'dimensions' must be {model.dimensions} or "
                "left out.",
                param="dimensions",
                code="invalid_value",
            )
        # Tokenizing thousands of inputs, and writing out as many vectors, would hold the event loop.
        prepared = await asyncio.to_thread(_prepare, model, params)
        vectors = await model.embed(prepared.texts)
        return await asyncio.to_thread(_render, vectors, params, prepared.tokens)


def _prepare(model: LocalEmbedder, params: EmbeddingCreateParams) -> _Prepared:
    """The texts to embed and their tokens in all, refusing inputs over the model's limits."""
    words = model.tokenizer
    if params.is_tokens:
        arrays = params.token_arrays
        vocabulary = words.tokenizer.get_vocab_size()
        for index, ids in enumerate(arrays):
            wrong = next((token for token in ids if not 0 <= token < vocabulary), None)
            if wrong is not None:
                raise _input_error(
                    f"input[{index}] holds the token id {wrong}, outside the vocabulary of the model "
                    f"'{model.model_id}' (ids 0 to {vocabulary - 1} of its own WordPiece tokenizer)."
                )
        counts = [len(ids) for ids in arrays]
        texts = words.tokenizer.decode_batch(arrays)
    else:
        texts = params.texts
        counts = [words.count(text) for text in texts]
    limit = model.max_input_tokens
    for index, count in enumerate(counts):
        if limit is not None and count > limit:
            raise _input_error(
                f"input[{index}] is {count} tokens long; the model '{model.model_id}' takes at most "
                f"{limit} tokens per input. Please cut it into shorter inputs."
            )
    total = sum(counts)
    if total > MAX_REQUEST_TOKENS:
        raise _input_error(
            f"The inputs are {total} tokens in all; at most {MAX_REQUEST_TOKENS} are allowed per request."
        )
    return _Prepared(texts=texts, tokens=total)


def _input_error(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param="input", code="invalid_value")


def _render(vectors: Vectors, params: EmbeddingCreateParams, tokens: int) -> bytes:
    # OpenAI's base64 is the vector's little-endian float32 bytes, which the SDKs decode with numpy.
    rows = vectors.astype("<f4", copy=False)
    embeddings: list[Any]
    if params.encoding_format == "base64":
        embeddings = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    else:
        embeddings = rows.tolist()
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": embedding}
            for index, embedding in enumerate(embeddings)
        ],
        "model": params.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(body, separators=(",", ":")).encode()
