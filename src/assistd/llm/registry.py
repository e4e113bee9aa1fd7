"""Which provider serves which model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import InvalidRequestError
from .local import LocalProvider
from .types import ChatProvider, ModelInfo
from .upstream import UpstreamProvider

# After the upstream failed to list its models, how long the default falls back to a local model before
# the upstream is asked again: a down upstream must not cost every assistant created meanwhile a timeout.
UPSTREAM_DEFAULT_RETRY_SECONDS = 30.0


class ProviderRegistry:
    """Routes a model id to its provider: local models by their ids, anything else to the upstream."""

    def __init__(
        self,
        upstream: ChatProvider | None = None,
        local: LocalProvider | None = None,
        default_model: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.local = local
        self._configured_default = default_model or None
        # The upstream's first listed model, kept once read: assistants created without a model should
        # not change model because the upstream reordered its list.
        self._upstream_default: str | None = None
        self._upstream_retry_at = 0.0
        self._default_lock = asyncio.Lock()

    def share_upstream(self, processes: int) -> None:
        """``processes`` executing processes share the upstream's concurrency limit (see
        ``UpstreamProvider.share``)."""
        if isinstance(self.upstream, UpstreamProvider):
            self.upstream.share(processes)

    @property
    def _providers(self) -> list[ChatProvider]:
        return [p for p in (self.local, self.upstream) if p is not None]

    def provider_for(self, model: str) -> ChatProvider:
        if self.local is not None and self.local.serves(model):
            return self.local
        if self.upstream is not None:
            return self.upstream
        served = ", ".join(self.local.model_ids) if self.local else "none"
        raise InvalidRequestError(
            f"The model '{model}' does not exist here: local models are {served}, and no upstream is "
            "configured (ASSISTD_UPSTREAM_BASE_URL).",
            param="model",
            code="model_not_found",
        )

    def prompt_budget(self, model: str, max_tokens: int | None) -> int | None:
        """Tokens left for the prompt in the model's context, where the provider knows it (local models)."""
        return self.local.prompt_budget(model, max_tokens) if self.local is not None else None

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        """The prompt's size in the model's own tokens, where the provider can tell (local models)."""
        if self.local is not None and self.local.serves(model):
            return await self.local.count_tokens(model, messages)
        return None

    async def default_model(self) -> str | None:
        """The model of an assistant created without one, on every surface (``/v1``, ``/actions``, the
        ``/ask`` default assistant): ``ASSISTD_DEFAULT_MODEL``, else the upstream's first listed model,
        else the first local model (the bundled one unless it is turned off); None when there is none."""
        if self._configured_default is not None:
            return self._configured_default
        if self.upstream is not None:
            upstream_default = await self._upstream_first_model()
            if upstream_default is not None:
                return upstream_default
        if self.local is not None and self.local.model_ids:
            return self.local.model_ids[0]
        return None

    async def require_default_model(self) -> str:
        """``default_model``, or the refusal that asks the client to name a model."""
        model = await self.default_model()
        if model is None:
            raise InvalidRequestError(
                "Missing required parameter: 'model' (this server has no default model: set "
                "ASSISTD_DEFAULT_MODEL, an upstream that lists its models, or a local model).",
                param="model",
            )
        return model

    async def _upstream_first_model(self) -> str | None:
        if self._upstream_default is not None or self.upstream is None:
            return self._upstream_default
        # One listing at a time: concurrent first creations wait for it rather than each asking.
        async with self._default_lock:
            if self._upstream_default is None and time.monotonic() >= self._upstream_retry_at:
                models = await self.upstream.list_models()
                if models:
                    self._upstream_default = models[0].id
                else:
                    # Unreachable, or it lists nothing: fall back for a while, then ask again.
                    self._upstream_retry_at = time.monotonic() + UPSTREAM_DEFAULT_RETRY_SECONDS
        return self._upstream_default

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /embeddings`` with ``body`` on the upstream, its answer as it sent it: the models this
        server does not embed with itself are the upstream's."""
        if not isinstance(self.upstream, UpstreamProvider):
            raise InvalidRequestError(
                f"The model '{body.get('model')}' does not exist here, and no upstream is configured "
                "(ASSISTD_UPSTREAM_BASE_URL) to serve its embeddings.",
                param="model",
                code="model_not_found",
            )
        return await self.upstream.embeddings(body)

    async def list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        for provider in self._providers:
            models.extend(await provider.list_models())
        return models

    async def close(self) -> None:
        for provider in self._providers:
            await provider.close()
