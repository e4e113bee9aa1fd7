"""Any OpenAI-compatible Chat Completions endpoint, called with the official ``openai`` SDK.

Retries (429, 5xx, timeouts, dropped connections) happen here, before the first chunk reaches the run:
once text has been streamed to clients a retry would repeat it, so a failure after that is final.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2 as httpx
import openai
from openai._base_client import get_platform
from openai._constants import RAW_RESPONSE_HEADER
from openai._httpx2 import request_exceptions, timeout_exceptions
from openai._models import FinalRequestOptions

from .. import metrics
from ..errors import AssistdError, InvalidRequestError, NotFoundError, UpstreamError
from .retry import RetryPolicy, TransientUpstreamError, describe, is_retryable
from .types import ChatChunk, ChatRequest, ModelInfo, TokenUsage, ToolCallDelta

log = logging.getLogger(__name__)

_MODELS_TTL_SECONDS = 60.0
_MODELS_TIMEOUT_SECONDS = 5.0


class UpstreamProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
        retry_budget: float = 60.0,
        retry_base: float = 0.5,
        max_concurrency: int = 1000,
    ) -> None:
        self._api_key = api_key or ""
        # As many connections as requests in flight, all kept alive between them: the SDK's default pool
        # (1,000 connections, 100 kept) would cap a larger limit, and would open and close a connection per
        # request past 100 at once, leaving sockets in TIME_WAIT by the thousand at a high run rate.
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout),
        )
        self._retry = RetryPolicy("The model provider", self._api_key, max_retries, retry_budget, retry_base)
        # ``max_concurrency`` is the deployment's: each executing process holds its share (``share``).
        # anyio's limiter, unlike asyncio's semaphore, can change size while requests hold it.
        self._max_concurrency = max_concurrency
        self._slots = anyio.CapacityLimiter(max_concurrency)
        self._models: list[ModelInfo] = []
        self._models_at = 0.0
        # The SDK's headers for a chat completion request (its key, user agent, platform), built once.
        self._chat_headers: httpx.Headers | None = None
        self._chat_url = self._client._prepare_url("chat/completions")

    def share(self, processes: int) -> None:
        """Hold this process's share of the concurrency limit among ``processes`` executing processes:
        rounded down, so that together they stay within it, but at least one request each."""
        self._slots.total_tokens = max(1, self._max_concurrency // max(1, processes))

    @property
    def concurrency(self) -> int:
        """The requests this process may have in flight now (its share of the limit)."""
        return int(self._slots.total_tokens)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        attempts = self._retry.start()
        while True:
            produced = False
            attempt: metrics.UpstreamAttempt | None = None
            # The slot is held on behalf of this stream, not of the task that opened it: a chat completion
            # stream waits for its first chunk in the request's task and is read on in the response's.
            borrower = object()
            try:
                await self._slots.acquire_on_behalf_of(borrower)
                try:
                    # Timed from here: the wait for a slot is assistd's own queue, not the upstream's latency.
                    attempt = metrics.upstream_request("chat.completions")
                    async with self._post_chat(_arguments(request)) as response:
                        # Read as plain JSON, which costs a third of building the SDK's pydantic chunks.
                        async for line in response.aiter_lines():
                            for converted in _parse_line(line):
                                if not produced:
                                    attempt.first_chunk()
                                produced = True
                                yield converted
                        status = str(response.status_code)
                finally:
                    self._slots.release_on_behalf_of(borrower)
            except Exception as exc:
                # Recorded before the retry's backoff, which is no part of the upstream's latency.
                if attempt is not None:
                    attempt.finished(_outcome(exc))
                # Text already streamed to clients would be repeated by a retry.
                await attempts.failed(exc, retryable=not produced)
                continue
            except BaseException:
                # The run was cancelled, or its executor stopped reading.
                if attempt is not None:
                    attempt.finished("cancelled")
                raise
            attempt.finished(status)
            return

    @asynccontextmanager
    async def _post_chat(self, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """The upstream's streamed answer to ``POST /chat/completions`` with ``body``, sent on the SDK's
        own ``httpx`` client with the SDK's headers, its failures raised as the SDK raises them
        (``APITimeoutError``, ``APIConnectionError``, the ``APIStatusError`` of the status), which is what
        ``retry.py`` decides on. Sent directly rather than through ``chat.completions.create``: the SDK's
        request building (options copied and validated, the body walked against its typed schema, its
        response wrappers) cost about a millisecond of CPU a call, a third of what assistd adds to a chat
        completion's latency."""
        headers = self._chat_headers
        if headers is None:
            headers = self._chat_headers = await self._sdk_headers()
        http = self._client._client
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        request = http.build_request("POST", self._chat_url, headers=headers, content=content)
        try:
            response = await http.send(request, stream=True)
        except timeout_exceptions() as exc:
            raise openai.APITimeoutError(request=request) from exc
        except request_exceptions() as exc:
            raise openai.APIConnectionError(request=request) from exc
        try:
            if not response.is_success:
                # Read first, as the SDK does: its error carries the upstream's body and message.
                await response.aread()
                raise self._client._make_status_error_from_response(response) from None
            yield response
        finally:
            await response.aclose()

    async def _sdk_headers(self) -> httpx.Headers:
        """The headers the SDK's ``chat.completions.with_streaming_response.create`` sends."""
        client = self._client
        if client._platform is None:
            # As the SDK does it: finding the platform may read files (the OS's release), off the loop.
            client._platform = await anyio.to_thread.run_sync(get_platform)
        # Built on the event loop: ``X-Stainless-Async`` names the async library it runs in.
        options = FinalRequestOptions.construct(
            method="post", url="/chat/completions", headers={RAW_RESPONSE_HEADER: "stream"}
        )
        return client._build_headers(options)

    async def list_models(self) -> list[ModelInfo]:
        if time.monotonic() - self._models_at < _MODELS_TTL_SECONDS:
            return self._models
        attempt = metrics.upstream_request("models")
        try:
            # Listing models must not hang for a whole generation timeout when the upstream is unreachable.
            page = await self._client.with_options(timeout=_MODELS_TIMEOUT_SECONDS).models.list()
        except openai.OpenAIError as exc:
            attempt.finished(_outcome(exc))
            log.warning("could not list upstream models: %s", describe(exc))
            return self._models
        attempt.finished("200")
        self._models = [
            ModelInfo(id=m.id, owned_by=m.owned_by or "upstream", created=m.created) for m in page.data
        ]
        self._models_at = time.monotonic()
        return self._models

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream's answer to ``POST /embeddings`` with ``body``, as it sent it (a base64 encoding
        stays base64), retried as chat completions are. The upstream refusing the request (a 4xx other
        than those retried) raises that refusal as assistd's own, with the upstream's message."""
        attempts = self._retry.start()
        while True:
            attempt: metrics.UpstreamAttempt | None = None
            try:
                async with self._slots:
                    attempt = metrics.upstream_request("embeddings")
                    response = await self._client.post("/embeddings", body=body, cast_to=httpx.Response)
                    payload = response.json()
            except openai.APIStatusError as exc:
                _attempt_finished(attempt, _outcome(exc))
                if not is_retryable(exc):
                    raise _refusal(exc, self._api_key) from exc
                await attempts.failed(exc)
                continue
            except Exception as exc:
                _attempt_finished(attempt, _outcome(exc))
                await attempts.failed(exc)
                continue
            _attempt_finished(attempt, str(response.status_code))
            if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
                raise UpstreamError(
                    "The model provider answered /embeddings with something other than a list."
                )
            return payload

    async def close(self) -> None:
        await self._client.close()


def _attempt_finished(attempt: metrics.UpstreamAttempt | None, status: str) -> None:
    if attempt is not None:
        attempt.finished(status)


def _refusal(exc: openai.APIStatusError, secret: str) -> AssistdError:
    """The client's error for a request the upstream refused: its message, param and code under the
    same status (400 or 404), except a refusal of assistd's own credentials, which is a 502."""
    body = exc.body if isinstance(exc.body, dict) else {}
    message = str(body.get("message") or exc.message)
    if len(secret) >= 4:
        message = message.replace(secret, "***")
    param = body.get("param") if isinstance(body.get("param"), str) else None
    code = body.get("code") if isinstance(body.get("code"), str) else None
    if exc.status_code in (401, 403):
        return UpstreamError(f"The model provider refused assistd's credentials (HTTP {exc.status_code}).")
    if exc.status_code == 404:
        return NotFoundError(message, param=param, code=code)
    return InvalidRequestError(message, param=param, code=code)


def _arguments(request: ChatRequest) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        args["tools"] = request.tools
        if request.tool_choice is not None:
            args["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None:
            args["parallel_tool_calls"] = request.parallel_tool_calls
    args.update(request.sampling())
    optional = {
        "max_completion_tokens": request.max_tokens,
        "response_format": request.response_format,
        "reasoning_effort": request.reasoning_effort,
    }
    args.update({key: value for key, value in optional.items() if value is not None})
    if request.top_logprobs is not None:
        args["logprobs"] = True
        args["top_logprobs"] = request.top_logprobs
    return args


class UpstreamStreamError(Exception):
    """An error the upstream sent inside a 200 stream (``data: {"error": ...}``)."""


class MalformedChunk(TransientUpstreamError):
    """A line of the stream that is no chat completion chunk: not JSON, or JSON of another shape. Checked
    here, so that a broken upstream fails the run with this message, not with an ``AttributeError`` from
    deep in the engine (or a number where text belongs)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the upstream sent a malformed stream chunk ({what})")


def _outcome(exc: BaseException) -> str:
    """The ``status`` label of a failed attempt: the HTTP status the upstream answered, else the kind of
    failure (a bounded set, so the metric's series stay few)."""
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return "connection_error"
    if isinstance(exc, UpstreamStreamError | MalformedChunk):
        return "stream_error"
    return "error"


def _parse_line(line: str) -> list[ChatChunk]:
    if not line.startswith("data:"):
        return []
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return []
    try:
        chunk = json.loads(data)
    except ValueError:
        raise MalformedChunk("not JSON") from None
    if not isinstance(chunk, dict):
        raise MalformedChunk("not a JSON object")
    if "error" in chunk:
        error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        raise UpstreamStreamError(str(error.get("message", "the upstream reported an error mid-stream")))
    return _convert(chunk)


def _convert(chunk: dict[str, Any]) -> list[ChatChunk]:
    out: list[ChatChunk] = []
    for choice in _list(chunk.get("choices"), "choices"):
        choice = _object(choice, "choices[]")
        delta = _object(choice.get("delta"), "delta")
        calls: list[ToolCallDelta] = []
        for call in _list(delta.get("tool_calls"), "tool_calls"):
            call = _object(call, "tool_calls[]")
            function = _object(call.get("function"), "function")
            calls.append(
                ToolCallDelta(
                    index=_int(call.get("index", 0), "tool_calls[].index"),
                    id=_text(call.get("id"), "tool_calls[].id"),
                    name=_text(function.get("name"), "function.name"),
                    arguments=_text(function.get("arguments"), "function.arguments"),
                )
            )
        text = _text(delta.get("content"), "content")
        finish_reason = _text(choice.get("finish_reason"), "finish_reason")
        logprobs = _logprobs(choice.get("logprobs"))
        if text or calls or finish_reason or logprobs:
            out.append(
                ChatChunk(
                    text=text or None,
                    tool_calls=tuple(calls),
                    finish_reason=finish_reason,
                    logprobs=logprobs,
                )
            )
    usage = chunk.get("usage")
    if usage:
        usage = _object(usage, "usage")
        prompt_details = _object(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details")
        completion_details = _object(
            usage.get("completion_tokens_details"), "usage.completion_tokens_details"
        )
        out.append(
            ChatChunk(
                usage=TokenUsage(
                    prompt_tokens=_int(usage.get("prompt_tokens") or 0, "usage.prompt_tokens"),
                    completion_tokens=_int(usage.get("completion_tokens") or 0, "usage.completion_tokens"),
                    cached_tokens=_int(
                        prompt_details.get("cached_tokens") or 0, "usage.prompt_tokens_details.cached_tokens"
                    ),
                    reasoning_tokens=_int(
                        completion_details.get("reasoning_tokens") or 0,
                        "usage.completion_tokens_details.reasoning_tokens",
                    ),
                )
            )
        )
    return out


def _logprobs(value: Any) -> tuple[dict[str, Any], ...]:
    """A choice's ``logprobs.content``: the content tokens' logprobs (the refusal's are not shown)."""
    tokens = _list(_object(value, "logprobs").get("content"), "logprobs.content")
    return tuple(_token_logprob(token, "logprobs.content[]", top=True) for token in tokens)


def _token_logprob(value: Any, name: str, *, top: bool) -> dict[str, Any]:
    token = _object(value, name)
    logprob = token.get("logprob")
    if not isinstance(logprob, int | float) or isinstance(logprob, bool):
        raise MalformedChunk(f"'{name}.logprob' is not a number")
    raw = token.get("bytes")
    if raw is not None and not (isinstance(raw, list) and all(isinstance(b, int) for b in raw)):
        raise MalformedChunk(f"'{name}.bytes' is not a list of integers")
    shown: dict[str, Any] = {
        "token": _text(token.get("token"), f"{name}.token") or "",
        "logprob": float(logprob),
        "bytes": raw,
    }
    if top:
        alternatives = _list(token.get("top_logprobs"), f"{name}.top_logprobs")
        shown["top_logprobs"] = [
            _token_logprob(alternative, f"{name}.top_logprobs[]", top=False) for alternative in alternatives
        ]
    return shown


# The shape checks of ``_convert``: absent (None) is always allowed, as the fields are optional.


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedChunk(f"'{name}' is not a list")
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedChunk(f"'{name}' is not an object")
    return value


def _text(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise MalformedChunk(f"'{name}' is not a string")
    return value


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedChunk(f"'{name}' is not an integer")
    return value
