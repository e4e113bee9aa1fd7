"""Runs, their options, and the bodies that create, modify and feed them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .common import (
    Metadata,
    ReasoningEffort,
    RequestInt,
    RequestModel,
    ResponseFormat,
    ToolResources,
    Tools,
    WireModel,
)
from .messages import IncompleteDetails, MessageCreateParams
from .threads import ThreadCreateParams

RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]


class TruncationStrategy(BaseModel):
    """As a run shows it: unbounded, so that no stored value can fail the response."""

    type: Literal["auto", "last_messages"]
    last_messages: int | None = None


class TruncationStrategyParam(TruncationStrategy):
    last_messages: Annotated[RequestInt, Field(ge=1)] | None = None


class ToolChoiceFunctionName(BaseModel):
    name: str


class ToolChoiceFunction(BaseModel):
    type: Literal["function"]
    function: ToolChoiceFunctionName


class ToolChoiceBuiltin(BaseModel):
    type: Literal["file_search", "code_interpreter"]


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[ToolChoiceFunction | ToolChoiceBuiltin, Field(discriminator="type")]
)


class FunctionCall(BaseModel):
    name: str
    arguments: str


class RequiredToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SubmitToolOutputsAction(BaseModel):
    tool_calls: list[RequiredToolCall]


class RequiredAction(BaseModel):
    type: Literal["submit_tool_outputs"] = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputsAction


class LastError(BaseModel):
    code: Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
    message: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class Run(WireModel):
    id: str
    object: Literal["thread.run"] = "thread.run"
    created_at: int
    thread_id: str
    assistant_id: str
    status: RunStatus
    required_action: RequiredAction | None
    last_error: LastError | None
    expires_at: int | None
    started_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    incomplete_details: IncompleteDetails | None
    model: str
    instructions: str
    tools: Tools
    metadata: dict[str, str]
    usage: Usage | None
    temperature: float | None
    top_p: float | None
    max_prompt_tokens: int | None
    max_completion_tokens: int | None
    truncation_strategy: TruncationStrategy
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    response_format: ResponseFormat
    reasoning_effort: ReasoningEffort | None = None


class _RunOptions(RequestModel):
    model: str | None = Field(default=None, min_length=1)
    instructions: str | None = Field(default=None, max_length=256_000)
    tools: Tools | None = None
    metadata: Metadata = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    # Bounded above by RequestInt: their columns are 32-bit on PostgreSQL.
    max_prompt_tokens: Annotated[RequestInt, Field(ge=256)] | None = None
    max_completion_tokens: Annotated[RequestInt, Field(ge=256)] | None = None
    truncation_strategy: TruncationStrategyParam | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


class RunCreateParams(_RunOptions):
    assistant_id: str
    additional_instructions: str | None = None
    additional_messages: list[MessageCreateParams] | None = None


class ThreadAndRunCreateParams(_RunOptions):
    assistant_id: str
    thread: ThreadCreateParams | None = None
    tool_resources: ToolResources | None = None


class RunUpdateParams(RequestModel):
    metadata: Metadata = None


class ToolOutput(BaseModel):
    tool_call_id: str | None = None
    output: str | None = None


class SubmitToolOutputsParams(RequestModel):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None
