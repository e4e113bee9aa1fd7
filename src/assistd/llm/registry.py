"""Which provider serves which model."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError
from .local import LocalProvider
from .types import ChatProvider, ModelInfo


class ProviderRegistry:
    """Routes a model id to its provider: local models by their ids, anything else to the upstream."""

    def __init__(self, upstream: ChatProvider | None = None, local: LocalProvider | None = None) -> None:
        self.upstream = upstream
        self.local = local

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

    async def list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        for provider in self._providers:
            models.extend(await provider.list_models())
        return models

    async def close(self) -> None:
        for provider in self._providers:
            await provider.close()
