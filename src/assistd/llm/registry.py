"""Which provider serves which model."""

from __future__ import annotations

from ..errors import InvalidRequestError
from .types import ChatProvider, ModelInfo


class ProviderRegistry:
    """Routes a model id to the provider that serves it; the upstream takes any id no other claims."""

    def __init__(self, upstream: ChatProvider | None = None) -> None:
        self.upstream = upstream
        self._providers: list[ChatProvider] = [upstream] if upstream else []

    def provider_for(self, model: str) -> ChatProvider:
        if self.upstream is not None:
            return self.upstream
        raise InvalidRequestError(
            f"No provider serves the model '{model}': set ASSISTD_UPSTREAM_BASE_URL.", param="model"
        )

    async def list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        for provider in self._providers:
            models.extend(await provider.list_models())
        return models

    async def close(self) -> None:
        for provider in self._providers:
            await provider.close()
