"""The Responses API's objects and the body that creates a response (``POST /v1/responses``).

A response is a run in another wire format: these models say what the Responses API takes and shows; what
a response is made of (a run, its thread, its messages) is the engine's (``engine/responses.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from .common import Metadata, ParamValueError, ReasoningEffort, RequestInt, RequestModel, WireModel

ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]

# OpenAI's bounds: instructions as a run's, output tokens from 16.
MAX_INSTRUCTIONS = 256_000
MIN_OUTPUT_TOKENS = 16

# Tools OpenAI's Responses API has and assistd does not serve at all, as against the ones whose turn comes
# (function, file_search, code_interpreter: the runs engine has them; their Responses shape is not done).
_TOOLS_LATER = ("function", "file_search", "code_interpreter")


# What OpenAI's include may ask for. A response of assistd's is messages only, which only
# ``message.output_text.logprobs`` changes (``LOGPROBS``); the others are accepted and show nothing more.
INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)


# The include value that asks for the output tokens' logprobs, and OpenAI's bound on ``top_logprobs``.
LOGPROBS = "message.output_text.logprobs"
MAX_TOP_LOGPROBS = 20


# The request ------------------------------------------------------------------------------------


def _conversation_id(value: Any) -> Any:
    """``conversation`` as its id: OpenAI takes the id alone or ``{"id": ...}``."""
    if not isinstance(value, dict):
        return value
    extra = sorted(set(value) - {"id"})
    if extra:
        raise ParamValueError(f"unrecognized argument '{extra[0]}'.", extra[0])
    if not isinstance(value.get("id"), str):
        raise ParamValueError("the conversation's id, a string, is required.", "id")
    return value["id"]


ConversationId = Annotated[str, BeforeValidator(_conversation_id), Field(min_length=1, max_length=64)]


class TextFormatText(RequestModel):
    type: Literal["text"]


class TextFormatJsonObject(RequestModel):
    type: Literal["json_object"]


class TextFormatJsonSchema(RequestModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    # ``schema`` shadows a BaseModel attribute: the field has another name and the wire's as its alias.
    json_schema: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    TextFormatText | TextFormatJsonObject | TextFormatJsonSchema, Field(discriminator="type")
]


class TextParam(RequestModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningParam(RequestModel):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ToolChoiceFunctionParam(RequestModel):
    type: Literal["function"]
    name: str


class StreamOptionsParam(RequestModel):
    # Accepted and moot: assistd's deltas carry no obfuscation padding.
    include_obfuscation: bool | None = None


class ResponseCreateParams(RequestModel):
    model: str = Field(min_length=1, max_length=256)
    # A string, or input items: their shape is checked, and they are turned into messages, by
    # ``protocol.items.input_to_messages`` (the one mapping between items and messages).
    input: str | list[Any] | None = None
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS)
    previous_response_id: str | None = Field(default=None, max_length=64)
    conversation: ConversationId | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptionsParam | None = None
    background: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: Annotated[RequestInt, Field(ge=MIN_OUTPUT_TOKENS)] | None = None
    metadata: Metadata = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=64)
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    truncation: Literal["auto", "disabled"] | None = None
    parallel_tool_calls: bool | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunctionParam | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    include: list[str] | None = None
    prompt: dict[str, Any] | None = None
    top_logprobs: Annotated[RequestInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None

    @model_validator(mode="after")
    def _served(self) -> ResponseCreateParams:
        # Named one by one, so that a client learns which of its parameters assistd does not serve (yet),
        # rather than getting an answer that silently ignored it.
        for index, tool in enumerate(self.tools or []):
            kind = tool.get("type")
            if kind in _TOOLS_LATER:
                raise ParamValueError(
                    f"tools of type '{kind}' are not served by assistd's /v1/responses yet; "
                    "use the Assistants API (runs) for tools.",
                    f"tools[{index}].type",
                )
            raise ParamValueError(
                f"tools of type {kind!r} are not served by assistd.", f"tools[{index}].type"
            )
        if self.background:
            raise ParamValueError("background responses are not served by assistd yet.", "background")
        if self.prompt is not None:
            raise ParamValueError("prompt templates are not served by assistd.", "prompt")
        for index, value in enumerate(self.include or []):
            if value not in INCLUDABLE:
                raise ParamValueError(
                    f"{value!r} is not one of {', '.join(INCLUDABLE)}.", f"include[{index}]"
                )
        if self.previous_response_id is not None and self.conversation is not None:
            raise ParamValueError(
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                "previous_response_id",
            )
        return self

    @property
    def conversation_id(self) -> str | None:
        return self.conversation

    def logprobs_asked(self) -> int | None:
        """How many likeliest alternatives each output token's logprob comes with (``top_logprobs``, 0 when
        not given), when ``include`` asks for ``message.output_text.logprobs``; None when it does not: the
        model is asked for logprobs only then."""
        if LOGPROBS not in (self.include or []):
            return None
        return self.top_logprobs or 0

    def response_format(self) -> dict[str, Any] | str:
        """``text.format`` as the run's ``response_format``."""
        chosen = self.text.format if self.text is not None else None
        if isinstance(chosen, TextFormatJsonObject):
            return {"type": "json_object"}
        if isinstance(chosen, TextFormatJsonSchema):
            schema: dict[str, Any] = {"name": chosen.name, "schema": chosen.json_schema}
            if chosen.description is not None:
                schema["description"] = chosen.description
            if chosen.strict is not None:
                schema["strict"] = chosen.strict
            return {"type": "json_schema", "json_schema": schema}
        return "auto"

    def echoed(self) -> dict[str, Any]:
        """The options the response object shows back, as it shows them."""
        text: dict[str, Any] = {"format": {"type": "text"}}
        if self.text is not None:
            if self.text.format is not None:
                text["format"] = self.text.format.model_dump(by_alias=True, exclude_none=True)
            if self.text.verbosity is not None:
                text["verbosity"] = self.text.verbosity
        choice = self.tool_choice or "auto"
        return {
            "model": self.model,
            "instructions": self.instructions,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "user": self.user,
            "safety_identifier": self.safety_identifier,
            "text": text,
            "reasoning": self.reasoning.model_dump() if self.reasoning is not None else None,
            "truncation": self.truncation or "disabled",
            "parallel_tool_calls": self.parallel_tool_calls is not False,
            "tool_choice": choice if isinstance(choice, str) else choice.model_dump(),
            "tools": [],
            "top_logprobs": self.top_logprobs,
        }


# The response -----------------------------------------------------------------------------------


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseError(BaseModel):
    code: Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
    message: str


class ResponseIncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseConversation(BaseModel):
    id: str


class Response(WireModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: ResponseIncompleteDetails | None
    model: str
    # Items as ``protocol.items`` makes them (one ``message`` item per message the run wrote).
    output: list[dict[str, Any]]
    instructions: str | None
    metadata: dict[str, str]
    temperature: float | None
    top_p: float | None
    max_output_tokens: int | None
    previous_response_id: str | None
    conversation: ResponseConversation | None
    store: bool
    background: bool = False
    text: dict[str, Any]
    reasoning: dict[str, Any] | None
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    parallel_tool_calls: bool
    truncation: Literal["auto", "disabled"]
    user: str | None
    safety_identifier: str | None
    top_logprobs: int | None = None
    usage: ResponseUsage | None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        # OpenAI's description has these an object and a string, not nullable: left out until they are.
        data = handler(self)
        if isinstance(data, dict):
            for name in _OMITTED_WHEN_NONE:
                if data.get(name) is None:
                    data.pop(name, None)
        return data


_OMITTED_WHEN_NONE = ("usage", "user")


def output_item(item: dict[str, Any]) -> dict[str, Any]:
    """A message item (``protocol.items``) as a response's output shows it: its ``output_text`` parts carry
    ``logprobs``, which OpenAI's description requires there (assistd has none to show: empty)."""
    if item.get("type") != "message":
        return item
    content = [
        {**part, "logprobs": []} if part.get("type") == "output_text" and "logprobs" not in part else part
        for part in item.get("content", [])
    ]
    return {**item, "content": content}


class DeletedResponse(WireModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


# Logprobs ---------------------------------------------------------------------------------------
# A message's token logprobs are kept as the model gave them, in Chat Completions' shape
# (``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``, ``bytes`` possibly null). The
# Responses API shows them in two shapes: an ``output_text`` part's (``bytes`` a list) and its stream events'
# (``response.output_text.delta`` / ``.done``: no ``bytes``).


def output_logprobs(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Token logprobs as an ``output_text`` part shows them."""
    return [
        {
            **_part_logprob(token),
            "top_logprobs": [_part_logprob(top) for top in token.get("top_logprobs") or []],
        }
        for token in tokens
    ]


def event_logprobs(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Token logprobs as ``response.output_text.delta`` and ``.done`` show them."""
    return [
        {
            "token": token["token"],
            "logprob": token["logprob"],
            "top_logprobs": [
                {"token": top["token"], "logprob": top["logprob"]} for top in token.get("top_logprobs") or []
            ],
        }
        for token in tokens
    ]


def with_logprobs(item: dict[str, Any], tokens: list[dict[str, Any]] | None) -> dict[str, Any]:
    """An output message item (``output_item``) with its text's token logprobs, where it has them."""
    if not tokens or item.get("type") != "message":
        return item
    shown = output_logprobs(tokens)
    content = [
        {**part, "logprobs": shown} if part.get("type") == "output_text" else part
        for part in item.get("content", [])
    ]
    return {**item, "content": content}


def _part_logprob(token: dict[str, Any]) -> dict[str, Any]:
    # A token with no byte form (a special token) has bytes null in Chat Completions: an empty list here,
    # which the Responses type requires.
    return {"token": token["token"], "bytes": token.get("bytes") or [], "logprob": token["logprob"]}
