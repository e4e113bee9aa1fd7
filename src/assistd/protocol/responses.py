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
    PrivateAttr,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from .common import Metadata, ParamValueError, ReasoningEffort, RequestInt, RequestModel, WireModel
from .response_functions import FunctionToolParam, function_tools, run_tool_choice
from .response_mcp import McpToolParam, mcp_tool
from .vector_stores import Filter

ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]

# OpenAI's bounds: instructions as a run's, output tokens from 16.
MAX_INSTRUCTIONS = 256_000
MIN_OUTPUT_TOKENS = 16


# Tools of OpenAI's Responses API that assistd does not serve, and is not about to: each is refused naming
# ``tools[i].type``, so that a client learns it at once instead of from an answer made without the tool.
UNSERVED_TOOLS = (
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "image_generation",
    "computer",
    "computer_use_preview",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
    "namespace",
    "tool_search",
    "programmatic_tool_calling",
)


def refuse_unserved_tool(index: int, tool: dict[str, Any]) -> None:
    """Refuse ``tools[index]`` when it is of a type assistd does not serve (``UNSERVED_TOOLS``)."""
    kind = tool.get("type")
    if kind in UNSERVED_TOOLS:
        raise ParamValueError(
            f"tools of type '{kind}' are not served by assistd: it has no such tool.",
            f"tools[{index}].type",
        )


# What OpenAI's include may ask for. ``file_search_call.results`` and ``code_interpreter_call.outputs`` show
# the built-in calls' results, ``message.output_text.logprobs`` (``LOGPROBS``) the output tokens' logprobs;
# the others are accepted and show nothing more (assistd makes no such items).
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


class ToolChoiceBuiltinParam(RequestModel):
    # A built-in tool the model must call (then answers freely, as a run's forced tool).
    type: Literal["file_search", "code_interpreter"]


class ToolChoiceMcpParam(RequestModel):
    # A tool of an MCP server the model must call: ``name`` (a tool the server lists), else any tool.
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


# Built-in tools ---------------------------------------------------------------------------------


class FileSearchRankingParam(RequestModel):
    # assistd has one ranker: either name is that one.
    ranker: Literal["auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(default=None, ge=0, le=1)


class FileSearchToolParam(RequestModel):
    """``{"type": "file_search", ...}``: a search over the vector stores named here, per request."""

    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=16)
    max_num_results: Annotated[RequestInt, Field(ge=1, le=50)] | None = None
    filters: Filter | None = None
    ranking_options: FileSearchRankingParam | None = None


class CodeContainerAuto(RequestModel):
    type: Literal["auto"]
    file_ids: list[str] | None = Field(default=None, max_length=100)
    # Accepted and echoed: assistd's sandbox has its own limits and no network.
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None


class CodeInterpreterToolParam(RequestModel):
    """``{"type": "code_interpreter", "container": ...}``: ``"auto"`` or ``{"type": "auto", "file_ids"}``
    runs the code in the session of the response's thread; a container id (a thread's or conversation's
    id, as a ``code_interpreter_call`` shows it) runs it in that thread's session."""

    type: Literal["code_interpreter"]
    container: str | CodeContainerAuto = Field(union_mode="left_to_right")

    @property
    def container_id(self) -> str | None:
        """The container named, or None for one of the response's own (``auto``)."""
        if isinstance(self.container, str) and self.container != "auto":
            return self.container
        return None

    @property
    def file_ids(self) -> list[str]:
        return list(self.container.file_ids or []) if isinstance(self.container, CodeContainerAuto) else []


def echoed_container(tools: list[dict[str, Any]], thread_id: str) -> str:
    """The container a response's code runs in, from its tools as echoed: the one named, else its thread's
    session (``auto``)."""
    for tool in tools:
        container = tool.get("container") if tool.get("type") == "code_interpreter" else None
        if isinstance(container, str) and container != "auto":
            return container
    return thread_id


BuiltinTool = Annotated[FileSearchToolParam | CodeInterpreterToolParam, Field(discriminator="type")]
_BUILTIN = TypeAdapter(BuiltinTool)
BUILTIN_TYPES = ("file_search", "code_interpreter")


def _builtin_tool(index: int, tool: dict[str, Any]) -> FileSearchToolParam | CodeInterpreterToolParam:
    """``tools[index]`` as a built-in tool, a refusal naming the parameter (``tools[0].max_num_results``)."""
    try:
        return _BUILTIN.validate_python(tool)
    except ValidationError as exc:
        kind = str(tool.get("type"))
        # A union's branches each say what they missed: the deepest says most (``container.type``, not
        # "container is not a string"), the first of those being the branch the client most likely meant.
        errors = exc.errors()
        error = max(errors, key=lambda e: (len(e["loc"]), -errors.index(e)))
        # Union branches pydantic tried (``ComparisonFilter``, ``str``) and the tag are not parameters.
        loc = [
            str(part)
            for part in error["loc"]
            if part != kind
            and not (isinstance(part, str) and (part[:1].isupper() or "[" in part or part == "str"))
        ]
        param = f"tools[{index}]" + "".join(f".{part}" if not part.isdigit() else f"[{part}]" for part in loc)
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ParamValueError):
            param = f"{param}.{cause.param}"
        if error["type"] == "extra_forbidden":
            raise ParamValueError("unrecognized argument.", param) from None
        raise ParamValueError(str(error["msg"]), param) from None


class StreamOptionsParam(RequestModel):
    # Accepted and moot: assistd's deltas carry no obfuscation padding.
    include_obfuscation: bool | None = None


def _prompt_variable(name: str, value: Any) -> Any:
    """A prompt variable's value: a string, or an ``input_text`` part (its text is what is filled in)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") == "input_text":
        # ``prompt_cache_breakpoint`` is a caching hint: accepted, and moot (assistd caches no prompts).
        extra = sorted(set(value) - {"type", "text", "prompt_cache_breakpoint"})
        if extra:
            raise ParamValueError(f"unrecognized argument '{extra[0]}'.", f"variables.{name}.{extra[0]}")
        if not isinstance(value.get("text"), str):
            raise ParamValueError(
                "an input_text variable needs its text, a string.", f"variables.{name}.text"
            )
        return {"type": "input_text", "text": value["text"]}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("input_image", "input_file"):
        # An assistant's instructions are text: an image or a file has no place in them.
        raise ParamValueError(
            f"{kind} prompt variables are not served by assistd: a prompt is an assistant, whose "
            "instructions are text. Give a string or an input_text part.",
            f"variables.{name}",
        )
    raise ParamValueError("a prompt variable is a string or an input_text part.", f"variables.{name}")


class PromptParam(RequestModel):
    """``prompt``: in assistd a prompt is an assistant (``asst_...``), its instructions the template."""

    id: str = Field(min_length=1, max_length=64)
    variables: dict[str, Any] | None = None
    version: str | None = None

    @model_validator(mode="after")
    def _values(self) -> PromptParam:
        if self.variables is not None:
            self.variables = {name: _prompt_variable(name, value) for name, value in self.variables.items()}
        if self.version is not None:
            # An assistant has one version, the current one: a pinned version cannot be honoured.
            raise ParamValueError(
                "assistd's prompts are assistants, which have no versions: leave version out.", "version"
            )
        return self

    def values(self) -> dict[str, str]:
        """Each variable as the text that replaces its ``{{name}}``."""
        return {
            name: value if isinstance(value, str) else value["text"]
            for name, value in (self.variables or {}).items()
        }


class ResponseCreateParams(RequestModel):
    # Optional with a ``prompt`` (the assistant's model then); without one, required (``engine/responses``).
    model: str | None = Field(default=None, min_length=1, max_length=256)
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
    tool_choice: (
        Literal["none", "auto", "required"]
        | ToolChoiceFunctionParam
        | ToolChoiceBuiltinParam
        | ToolChoiceMcpParam
        | None
    ) = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    include: list[str] | None = None
    prompt: PromptParam | None = None
    top_logprobs: Annotated[RequestInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    # Bounds the built-in tool calls (file_search, code_interpreter) of the response, all together.
    max_tool_calls: Annotated[RequestInt, Field(ge=1)] | None = None
    # ``tools`` entries of the built-in kinds, parsed, with their place in ``tools``.
    _builtin: list[tuple[int, FileSearchToolParam | CodeInterpreterToolParam]] = PrivateAttr(
        default_factory=list
    )

    _function_tools: list[FunctionToolParam] = PrivateAttr(default_factory=list)
    # ``tools`` entries of type ``mcp``, parsed, with their place in ``tools``.
    _mcp: list[tuple[int, McpToolParam]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _served(self) -> ResponseCreateParams:
        # Named one by one, so that a client learns which of its parameters assistd does not serve (yet),
        # rather than getting an answer that silently ignored it.
        for index, tool in enumerate(self.tools or []):
            refuse_unserved_tool(index, tool)
            kind = tool.get("type")
            if kind == "function":
                continue  # checked by ``_functions``
            if kind in BUILTIN_TYPES:
                self._builtin.append((index, _builtin_tool(index, tool)))
                continue
            if kind == "mcp":
                server = mcp_tool(index, tool)
                if any(other.server_label == server.server_label for _, other in self._mcp):
                    raise ParamValueError(
                        f"Duplicate MCP server_label {server.server_label!r}.", f"tools[{index}].server_label"
                    )
                self._mcp.append((index, server))
                continue
            raise ParamValueError(
                f"tools of type {kind!r} are not served by assistd.", f"tools[{index}].type"
            )
        if isinstance(self.tool_choice, ToolChoiceBuiltinParam) and not any(
            tool.type == self.tool_choice.type for _, tool in self._builtin
        ):
            raise ParamValueError(
                f"tool_choice names '{self.tool_choice.type}', which is not in 'tools'.", "tool_choice"
            )
        if isinstance(self.tool_choice, ToolChoiceMcpParam) and not any(
            server.server_label == self.tool_choice.server_label for _, server in self._mcp
        ):
            raise ParamValueError(
                f"tool_choice names the MCP server '{self.tool_choice.server_label}', which is not in "
                "'tools'.",
                "tool_choice",
            )
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

    @model_validator(mode="after")
    def _functions(self) -> ResponseCreateParams:
        # Parsed here so that a bad function tool, or a tool_choice naming none of them, is a 400 naming it.
        self._function_tools = function_tools(self.tools or [], self.tool_choice)
        return self

    def functions(self) -> list[FunctionToolParam]:
        """The request's function tools, in ``tools`` order."""
        return self._function_tools

    @model_validator(mode="after")
    def _background_is_stored(self) -> ResponseCreateParams:
        # OpenAI's rule: a background response is fetched (polled, resumed) later, so it must be kept.
        if self.background and self.store is False:
            raise ParamValueError("Background responses must be stored: 'store' cannot be false.", "store")
        return self

    @property
    def conversation_id(self) -> str | None:
        return self.conversation

    @property
    def builtin_tools(self) -> list[tuple[int, FileSearchToolParam | CodeInterpreterToolParam]]:
        """The built-in tools asked for, each with its index in ``tools`` (for errors naming it)."""
        return list(self._builtin)

    @property
    def mcp_tools(self) -> list[tuple[int, McpToolParam]]:
        """The MCP servers given, each with its index in ``tools``."""
        return list(self._mcp)

    def echoed_builtin_tools(self) -> list[dict[str, Any]]:
        """The built-in tools as the response shows them back, OpenAI's defaults filled in."""
        shown: list[dict[str, Any]] = []
        for _, tool in self._builtin:
            if isinstance(tool, FileSearchToolParam):
                ranking = tool.ranking_options or FileSearchRankingParam()
                shown.append(
                    {
                        "type": "file_search",
                        "vector_store_ids": tool.vector_store_ids,
                        "filters": tool.filters.model_dump() if tool.filters is not None else None,
                        "max_num_results": tool.max_num_results or 20,
                        "ranking_options": {
                            "ranker": ranking.ranker or "auto",
                            "score_threshold": ranking.score_threshold or 0.0,
                        },
                    }
                )
            else:
                container = tool.container
                shown.append(
                    {
                        "type": "code_interpreter",
                        "container": container
                        if isinstance(container, str)
                        else container.model_dump(exclude_none=True),
                    }
                )
        return shown

    def echoed_tools(self) -> list[dict[str, Any]]:
        """All the request's tools as the response shows them back, in the request's order."""
        functions = iter(self.functions())
        builtin = iter(self.echoed_builtin_tools())
        servers = iter(server.echoed() for _, server in self._mcp)
        return [
            next(functions).echoed()
            if tool.get("type") == "function"
            else next(servers)
            if tool.get("type") == "mcp"
            else next(builtin)
            for tool in self.tools or []
        ]

    def run_tool_choice(self) -> str | dict[str, Any]:
        """``tool_choice`` as the run's: a mode, the built-in tool or the function the model must call."""
        choice = self.tool_choice
        if isinstance(choice, ToolChoiceBuiltinParam):
            return {"type": choice.type}
        if isinstance(choice, ToolChoiceMcpParam):
            # The server's tool is offered to the model as a function of its name; a server named alone
            # is a tool required (the model may then call another server's, or a function).
            return (
                "required" if choice.name is None else {"type": "function", "function": {"name": choice.name}}
            )
        return run_tool_choice(choice)

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
            "tools": self.echoed_tools(),
            "max_tool_calls": self.max_tool_calls,
            "top_logprobs": self.top_logprobs,
        }


# Counting input tokens (``POST /v1/responses/input_tokens``) ----------------------------------------

# The body OpenAI's ``TokenCountsBody`` takes: the parameters of a create that shape the model's input.
_COUNTED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "conversation",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "truncation",
        "personality",
    }
)


class InputTokenCountParams(ResponseCreateParams):
    """What ``input_tokens`` counts: a create's body less what does not reach the model (``stream``,
    ``store``, ``metadata``, ...), checked as a create's is, so that a count is refused where the create
    would be."""

    personality: str | None = Field(default=None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _counted_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in _COUNTED:
                    raise ParamValueError(f"Unrecognized request argument supplied: {key}", key)
        return data

    @model_validator(mode="after")
    def _personality(self) -> InputTokenCountParams:
        if self.personality is not None:
            raise ParamValueError("personality presets are not served by assistd.", "personality")
        return self


class InputTokenCount(WireModel):
    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int


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
    max_tool_calls: int | None = None
    parallel_tool_calls: bool
    truncation: Literal["auto", "disabled"]
    user: str | None
    safety_identifier: str | None
    top_logprobs: int | None = None
    usage: ResponseUsage | None
    # ``{id, variables, version}`` of the request's prompt (an assistant), or null.
    prompt: dict[str, Any] | None = None

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
