"""Assistant objects and the bodies that create and modify them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import Metadata, ReasoningEffort, RequestModel, ResponseFormat, ToolResources, Tools, WireModel


class Assistant(WireModel):
    id: str
    object: Literal["assistant"] = "assistant"
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: Tools
    tool_resources: ToolResources | None
    metadata: dict[str, str]
    temperature: float | None
    top_p: float | None
    response_format: ResponseFormat | None
    reasoning_effort: ReasoningEffort | None = None


class AssistantCreateParams(RequestModel):
    # Optional, unlike OpenAI's: the server's default model (the local one out of the box) fills it in.
    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    instructions: str | None = Field(default=None, max_length=256_000)
    reasoning_effort: ReasoningEffort | None = None
    tools: Tools = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat | None = None


class AssistantUpdateParams(RequestModel):
    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    instructions: str | None = Field(default=None, max_length=256_000)
    reasoning_effort: ReasoningEffort | None = None
    tools: Tools | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat | None = None
