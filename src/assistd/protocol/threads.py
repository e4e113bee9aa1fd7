"""Threads and the bodies that create and modify them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import Metadata, RequestModel, ToolResources, WireModel
from .messages import MessageCreateParams


class Thread(WireModel):
    id: str
    object: Literal["thread"] = "thread"
    created_at: int
    tool_resources: ToolResources | None
    metadata: dict[str, str]


class ThreadCreateParams(RequestModel):
    messages: list[MessageCreateParams] = Field(default_factory=list, max_length=32)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None


class ThreadUpdateParams(RequestModel):
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
