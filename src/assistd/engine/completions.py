"""Chat Completions on the providers runs use: one model call, answered as a ``chat.completion`` or as its
``chat.completion.chunk`` stream, and its tokens counted against the caller's managed key.

No thread, no run, nothing stored but the key's token count: a completion is the provider's answer (a
``ChatRequest`` streamed as ``ChatChunk``s, ``llm/types.py``) in OpenAI's wire shape.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..errors import AssistdError, InvalidRequestError, NotFoundError, UpstreamError
from ..llm.registry import ProviderRegistry
from ..llm.retry import upstream_status
from ..llm.types import ChatChunk, ChatRequest, TokenUsage
from ..protocol.chat_completions import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionCreateParams,
    ChoiceLogprobs,
    CompletionUsage,
    FinishReason,
    ToolCall,
)
from ..store import api_keys
from ..store.database import Database
from .context import CHARS_PER_TOKEN, estimate_tokens

_FINISH_REASONS: frozenset[str] = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "function_call"}
)


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(14)


def chat_request(params: ChatCompletionCreateParams) -> ChatRequest:
    """The request a provider gets: the same ``ChatRequest`` a run's turn makes."""
    return ChatRequest(
        model=params.model,
        messages=params.provider_messages(),
        tools=[tool.model_dump() for tool in params.tools or ()],
        tool_choice=(
            params.tool_choice
            if isinstance(params.tool_choice, str) or params.tool_choice is None
            else params.tool_choice.model_dump()
        ),
        parallel_tool_calls=params.parallel_tool_calls,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_completion_tokens or params.max_tokens,
        response_format=params.response_format.model_dump() if params.response_format else None,
        reasoning_effort=params.reasoning_effort,
        top_logprobs=(params.top_logprobs or 0) if params.logprobs else None,
        stop=params.stops,
        seed=params.seed,
        frequency_penalty=params.frequency_penalty,
        presence_penalty=params.presence_penalty,
    )


def _client_error(exc: UpstreamError, model: str) -> AssistdError:
    """What the caller is told of an upstream failure: the upstream's own refusal of the request (an unknown
    model, a parameter it does not take) as the same 4xx, anything else as the 502 a run would fail with."""
    status = upstream_status(exc)
    if status == 404:
        return NotFoundError(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    if status in (400, 422):
        return InvalidRequestError(exc.message)
    return exc


def _usage(usage: TokenUsage) -> CompletionUsage:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


@dataclass
class _Answer:
    """What the provider said so far."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, ToolCall] = field(default_factory=dict)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: TokenUsage | None = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.text:
            self.text.append(chunk.text)
        self.logprobs.extend(chunk.logprobs)
        for delta in chunk.tool_calls:
            call = self.calls.get(delta.index)
            if call is None:
                call = self.calls[delta.index] = {
                    "id": delta.id or completion_id().replace("chatcmpl-", "call_"),
                    "type": "function",
                    "function": {"name": delta.name or "", "arguments": ""},
                }
            elif delta.name and not call["function"]["name"]:
                call["function"]["name"] = delta.name
            if delta.arguments:
                call["function"]["arguments"] += delta.arguments
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.usage:
            self.usage = chunk.usage

    def finish(self) -> FinishReason:
        reason = self.finish_reason
        if reason in _FINISH_REASONS:
            return reason  # type: ignore[return-value]
        return "tool_calls" if self.calls else "stop"

    def token_usage(self, request: ChatRequest) -> TokenUsage:
        """The provider's count, or the estimate a run makes when it gave none."""
        if self.usage is not None:
            return self.usage
        text = "".join(self.text) + "".join(c["function"]["arguments"] for c in self.calls.values())
        return TokenUsage(estimate_tokens(request.messages), max(1, len(text) // CHARS_PER_TOKEN))


class Completions:
    """Chat completions for one request's caller; ``key_id``: the managed key its tokens count under."""

    def __init__(self, providers: ProviderRegistry, db: Database, key_id: str | None) -> None:
        self._providers = providers
        self._db = db
        self._key_id = key_id

    async def create(self, params: ChatCompletionCreateParams) -> ChatCompletion:
        request = chat_request(params)
        answer = _Answer()
        chunks = self._open(request)
        try:
            async for chunk in chunks:
                answer.add(chunk)
        except UpstreamError as exc:
            raise _client_error(exc, params.model) from exc
        finally:
            await chunks.aclose()
            await self._count(answer, request)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(answer.text) if answer.text or not answer.calls else None,
            "refusal": None,
            "annotations": [],
        }
        if answer.calls:
            message["tool_calls"] = [answer.calls[index] for index in sorted(answer.calls)]
        return {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": params.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,  # type: ignore[typeddict-item]
                    "logprobs": _logprobs(answer.logprobs) if params.logprobs else None,
                    "finish_reason": answer.finish(),
                }
            ],
            "usage": _usage(answer.token_usage(request)),
            "service_tier": "default",
            "system_fingerprint": None,
        }

    async def stream(self, params: ChatCompletionCreateParams) -> AsyncIterator[ChatCompletionChunk]:
        """The completion's chunks, as OpenAI sends them. The provider's first chunk is awaited before this
        returns, so that a refusal or an upstream that fails for good is an ordinary error response; a
        failure after it is raised while iterating."""
        request = chat_request(params)
        chunks = self._open(request)
        try:
            first = await anext(chunks, None)
        except UpstreamError as exc:
            await chunks.aclose()
            raise _client_error(exc, params.model) from exc
        except BaseException:
            await chunks.aclose()
            raise
        return self._chunks(params, request, first, chunks)

    async def _open(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        provider = self._providers.provider_for(request.model)
        async for chunk in provider.stream(request):
            yield chunk

    async def _chunks(
        self,
        params: ChatCompletionCreateParams,
        request: ChatRequest,
        first: ChatChunk | None,
        chunks: AsyncGenerator[ChatChunk, None],
    ) -> AsyncIterator[ChatCompletionChunk]:
        ident, created, model = completion_id(), int(time.time()), params.model
        include_usage = params.include_usage
        asked_logprobs = bool(params.logprobs)
        answer = _Answer()

        def chunk(
            delta: dict[str, Any], *, logprobs: ChoiceLogprobs | None = None, finish: Any = None
        ) -> ChatCompletionChunk:
            out: ChatCompletionChunk = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
                "service_tier": "default",
                "system_fingerprint": None,
            }
            if include_usage:
                out["usage"] = None
            return out

        try:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            pending = first
            while pending is not None:
                answer.add(pending)
                if pending.text:
                    logprobs = _logprobs(list(pending.logprobs)) if asked_logprobs else None
                    yield chunk({"content": pending.text}, logprobs=logprobs)
                if pending.tool_calls:
                    yield chunk(
                        {
                            "tool_calls": [
                                _call_delta(answer, delta.index, delta) for delta in pending.tool_calls
                            ]
                        }
                    )
                pending = await anext(chunks, None)
            yield chunk({}, finish=answer.finish())
            if include_usage:
                usage = answer.token_usage(request)
                last: ChatCompletionChunk = chunk({})
                last["choices"] = []
                last["usage"] = _usage(usage)
                yield last
        finally:
            await chunks.aclose()
            # Counted even when the client went away mid-stream: the tokens were spent.
            with anyio.CancelScope(shield=True):
                await self._count(answer, request)

    async def _count(self, answer: _Answer, request: ChatRequest) -> None:
        # Nothing is counted of a call that failed before the model said anything.
        if self._key_id is None or not (answer.usage or answer.text or answer.calls):
            return
        tokens = answer.token_usage(request).total_tokens
        async with self._db.write() as session:
            await api_keys.add_tokens(session, self._key_id, api_keys.day_of(time.time()), tokens)


def _call_delta(answer: _Answer, index: int, delta: Any) -> dict[str, Any]:
    """One tool call's delta as OpenAI streams it: id, type and name with its first piece, then arguments."""
    out: dict[str, Any] = {"index": index}
    if delta.id is not None or delta.name is not None:
        call = answer.calls[index]
        out["id"] = call["id"]
        out["type"] = "function"
        out["function"] = {"name": call["function"]["name"], "arguments": delta.arguments or ""}
    else:
        out["function"] = {"arguments": delta.arguments or ""}
    return out


def _logprobs(tokens: list[dict[str, Any]]) -> ChoiceLogprobs:
    return {"content": tokens, "refusal": None}
