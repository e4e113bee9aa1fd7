"""OpenAI's Chat Completions API (``POST /v1/chat/completions``): the request body, and the completion and
chunk objects it answers with.

The answers are ``TypedDict``s, not models: a stream sends one chunk per token, and a dict serialised by
``json.dumps`` costs a fraction of a model's validation and dump (the tests check them against the ``openai``
package's own types). Nothing is stored: assistd keeps no completions (``store`` is refused).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from .common import (
    FunctionTool,
    ParamValueError,
    ReasoningEffort,
    RequestInt,
    RequestModel,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
)

# OpenAI's bounds.
MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20
MAX_TOOLS = 128


# Messages ----------------------------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Message):
    type: Literal["text"]
    text: str


class ImageUrl(_Message):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Message):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCallParam(_Message):
    name: str
    arguments: str


class ToolCallParam(_Message):
    id: str
    type: Literal["function"]
    function: FunctionCallParam


Role = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessage(_Message):
    """One message of any role, its fields checked per role. One model rather than a union by role: a
    union's errors would name the branch (``messages[0].assistant.content``), not the parameter."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    # What the SDK's own message objects carry, so that an answer's message can be sent back as it is;
    # none of it is the model's input.
    annotations: list[Any] | None = Field(default=None, exclude=True)
    audio: None = Field(default=None, exclude=True)
    function_call: None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _fits_role(self) -> ChatMessage:
        role = self.role
        if role == "tool" and self.tool_call_id is None:
            raise ParamValueError(
                "a tool message needs the 'tool_call_id' of the call it answers.", "tool_call_id"
            )
        if role != "tool" and self.tool_call_id is not None:
            raise ParamValueError(f"a {role} message has no 'tool_call_id'.", "tool_call_id")
        if role != "assistant":
            for extra in ("tool_calls", "refusal"):
                if getattr(self, extra) is not None:
                    raise ParamValueError(f"a {role} message has no '{extra}'.", extra)
            if self.content is None:
                raise ParamValueError(f"a {role} message needs 'content'.", "content")
        elif self.content is None and not self.tool_calls:
            raise ParamValueError("an assistant message needs 'content' or 'tool_calls'.", "content")
        if (
            role != "user"
            and isinstance(self.content, list)
            and any(part.type != "text" for part in self.content)
        ):
            raise ParamValueError(f"a {role} message's content may only be text parts.", "content")
        return self


# Options -----------------------------------------------------------------------------------------


class ToolChoiceFunctionName(_Message):
    name: str


class ToolChoiceFunction(_Message):
    type: Literal["function"]
    function: ToolChoiceFunctionName


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction

ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema, Field(discriminator="type")
]


class StreamOptions(_Message):
    include_usage: bool | None = None
    # Accepted and moot: assistd's chunks carry no obfuscation padding.
    include_obfuscation: bool | None = None


class ChatCompletionCreateParams(RequestModel):
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    max_completion_tokens: Annotated[RequestInt, Field(ge=1)] | None = None
    # The older name of ``max_completion_tokens``; the newer wins when both are given.
    max_tokens: Annotated[RequestInt, Field(ge=1)] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    n: RequestInt | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[RequestInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    reasoning_effort: ReasoningEffort | None = None
    # Stored completions are not kept: ``store`` may only be false, and ``metadata`` goes with it.
    store: bool | None = None
    metadata: dict[str, str] | None = None
    # Accepted and moot here: they tag or route a request, and change nothing in its answer.
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionCreateParams:
        # Refused after the fields are checked, naming the parameter, as OpenAI names it.
        if self.n is not None and self.n != 1:
            raise ParamValueError("assistd generates one choice per request: 'n' may only be 1.", "n")
        if self.store:
            raise ParamValueError(
                "assistd does not store chat completions: 'store' may only be false.", "store"
            )
        if self.stream_options is not None and not self.stream:
            raise ParamValueError("'stream_options' is only allowed when 'stream' is true.", "stream_options")
        if self.top_logprobs is not None and not self.logprobs:
            raise ParamValueError("'logprobs' must be true when 'top_logprobs' is given.", "top_logprobs")
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ParamValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed.", "stop")
        if self.tool_choice is not None and not self.tools:
            raise ParamValueError("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice")
        if isinstance(self.tool_choice, ToolChoiceFunction):
            name = self.tool_choice.function.name
            if name not in {tool.function.name for tool in self.tools or []}:
                raise ParamValueError(f"no function named '{name}' is among the tools.", "tool_choice")
        if self.parallel_tool_calls is not None and not self.tools:
            raise ParamValueError(
                "'parallel_tool_calls' is only allowed when 'tools' are specified.", "parallel_tool_calls"
            )
        return self

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def provider_messages(self) -> list[dict[str, Any]]:
        """The messages as a provider takes them: OpenAI's own shape, unset fields left out."""
        return [message.model_dump(exclude_none=True) for message in self.messages]


# The answers --------------------------------------------------------------------------------------


class TopLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(TypedDict):
    content: list[dict[str, Any]] | None
    refusal: None


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CompletionMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    annotations: list[Any]
    tool_calls: NotRequired[list[ToolCall]]


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class Choice(TypedDict):
    index: int
    message: CompletionMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class PromptTokensDetails(TypedDict):
    cached_tokens: int


class CompletionTokensDetails(TypedDict):
    reasoning_tokens: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[PromptTokensDetails]
    completion_tokens_details: NotRequired[CompletionTokensDetails]


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    service_tier: str
    system_fingerprint: None


class ChunkChoice(TypedDict):
    index: int
    delta: dict[str, Any]
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    service_tier: str
    system_fingerprint: None
    usage: NotRequired[CompletionUsage | None]
