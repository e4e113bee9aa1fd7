"""Run steps: a message creation or a set of tool calls made during a run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .common import WireModel
from .runs import LastError, Usage

StepStatus = Literal["in_progress", "cancelled", "failed", "completed", "expired"]

FILE_SEARCH_CONTENT_INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"


class MessageCreation(BaseModel):
    message_id: str


class MessageCreationDetails(BaseModel):
    type: Literal["message_creation"] = "message_creation"
    message_creation: MessageCreation


class FunctionCallDetail(BaseModel):
    name: str
    arguments: str
    output: str | None = None


class FunctionToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallDetail


class ToolCallsDetails(BaseModel):
    type: Literal["tool_calls"] = "tool_calls"
    # Built-in tools (file_search, code_interpreter) add their own call shapes here.
    tool_calls: list[FunctionToolCall | dict[str, Any]]


StepDetails = Annotated[MessageCreationDetails | ToolCallsDetails, Field(discriminator="type")]


class RunStep(WireModel):
    id: str
    object: Literal["thread.run.step"] = "thread.run.step"
    created_at: int
    assistant_id: str
    thread_id: str
    run_id: str
    type: Literal["message_creation", "tool_calls"]
    status: StepStatus
    step_details: StepDetails
    last_error: LastError | None
    expired_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    metadata: dict[str, str] | None
    usage: Usage | None
