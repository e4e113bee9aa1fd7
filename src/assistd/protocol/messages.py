"""Thread messages: their content parts, attachments and the bodies that create and modify them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .common import CodeInterpreterTool, Metadata, RequestModel, SparseModel, WireModel

# Content as the client sends it -----------------------------------------------------------------


class TextPartParam(BaseModel):
    type: Literal["text"]
    text: str


class ImageFileParam(SparseModel):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePartParam(BaseModel):
    type: Literal["image_file"]
    image_file: ImageFileParam


class ImageUrlParam(SparseModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPartParam(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrlParam


ContentPartParam = Annotated[
    TextPartParam | ImageFilePartParam | ImageUrlPartParam, Field(discriminator="type")
]


class FileSearchAttachmentTool(BaseModel):
    type: Literal["file_search"]


AttachmentTool = Annotated[CodeInterpreterTool | FileSearchAttachmentTool, Field(discriminator="type")]


class Attachment(BaseModel):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreateParams(RequestModel):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPartParam], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    metadata: Metadata = None


class MessageUpdateParams(RequestModel):
    metadata: Metadata = None


# Content as assistd returns it ------------------------------------------------------------------


class TextValue(BaseModel):
    value: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: TextValue


class ImageFileContent(BaseModel):
    type: Literal["image_file"] = "image_file"
    image_file: ImageFileParam


class ImageUrlContent(BaseModel):
    type: Literal["image_url"] = "image_url"
    image_url: ImageUrlParam


class RefusalContent(BaseModel):
    type: Literal["refusal"] = "refusal"
    refusal: str


MessageContent = Annotated[
    TextContent | ImageFileContent | ImageUrlContent | RefusalContent, Field(discriminator="type")
]


class IncompleteDetails(BaseModel):
    reason: str


class Message(WireModel):
    id: str
    object: Literal["thread.message"] = "thread.message"
    created_at: int
    thread_id: str
    status: Literal["in_progress", "incomplete", "completed"]
    incomplete_details: IncompleteDetails | None
    completed_at: int | None
    incomplete_at: int | None
    role: Literal["user", "assistant"]
    content: list[MessageContent]
    assistant_id: str | None
    run_id: str | None
    attachments: list[Attachment] | None
    metadata: dict[str, str]


def content_from_param(content: str | list[ContentPartParam]) -> list[MessageContent]:
    """Turn the content a client sent into the content parts a message stores."""
    if isinstance(content, str):
        return [TextContent(text=TextValue(value=content))]
    parts: list[MessageContent] = []
    for part in content:
        if isinstance(part, TextPartParam):
            parts.append(TextContent(text=TextValue(value=part.text)))
        elif isinstance(part, ImageFilePartParam):
            parts.append(ImageFileContent(image_file=part.image_file))
        else:
            parts.append(ImageUrlContent(image_url=part.image_url))
    return parts
