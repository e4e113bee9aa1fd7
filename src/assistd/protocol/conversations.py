"""Conversations (a thread seen through the Conversations API), their item lists and request bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .common import Metadata, RequestModel, ToolResources, WireModel

# OpenAI's bound on the items one request adds.
MAX_ITEMS_PER_REQUEST = 20


class Conversation(WireModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]
    # An assistd extension: the thread's tool resources, which OpenAI's conversation does not carry.
    tool_resources: ToolResources | None


class ConversationDeleted(WireModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ConversationItemList(WireModel):
    """A page of items; ``first_id`` and ``last_id`` are null on an empty page (as on other lists)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ConversationCreateParams(RequestModel):
    # Items are read by ``protocol.items.input_to_messages``, which names the item that is wrong.
    items: list[Any] | None = Field(default=None, max_length=MAX_ITEMS_PER_REQUEST)
    metadata: Metadata = None


class ConversationUpdateParams(RequestModel):
    # Required, as OpenAI's UpdateConversationBody says: null clears the metadata.
    metadata: Metadata


class ItemCreateParams(RequestModel):
    items: list[Any] = Field(max_length=MAX_ITEMS_PER_REQUEST)
