"""What the run engine asks of a model and what it gets back, whatever serves the model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    # Ask for each output token's logprob with this many likeliest alternatives (0-20); None: do not ask.
    top_logprobs: int | None = None
    # Sampling options Chat Completions takes as they are (None: the provider's default).
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    def sampling(self) -> dict[str, Any]:
        """The sampling options given, under OpenAI's Chat Completions names (which llama.cpp's server
        takes too): every provider sends them as they are."""
        given = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }
        options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
        if self.stop:
            options["stop"] = list(self.stop)
        return options


@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    # Where the model says so (OpenAI's ``prompt_tokens_details`` / ``completion_tokens_details``): the
    # prompt tokens read from its prompt cache, and the completion tokens spent reasoning; 0 otherwise.
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatChunk:
    text: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    # The logprobs of the tokens of ``text``, as OpenAI's Chat Completions gives them
    # (``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``), when they were asked for.
    logprobs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    id: str
    owned_by: str
    created: int = 0


class ChatProvider(Protocol):
    """A source of chat completions: an OpenAI-compatible upstream, or a local model."""

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield the model's answer as it is generated; raise ``UpstreamError`` when it fails for good."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def close(self) -> None: ...
