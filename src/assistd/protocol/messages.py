"""Thread messages: their content parts, attachments and the bodies that create and modify them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from .common import CodeInterpreterTool, Metadata, ParamValueError, RequestModel, SparseModel, Uri, WireModel

# OpenAI's bound on instructions; its OpenAPI description states none for a message's text, so the same.
MAX_MESSAGE_TEXT = 256_000
# OpenAI documents no bound on content parts; text is bounded above, and a model sees few images at once.
MAX_CONTENT_PARTS = 32
# OpenAI's bound on the files of one message (documented with v1's file_ids, kept for attachments).
MAX_ATTACHMENTS = 10

# Content as the client sends it -----------------------------------------------------------------


class TextPartParam(BaseModel):
    type: Literal["text"]
    text: str = Field(max_length=MAX_MESSAGE_TEXT)


class ImageFileParam(SparseModel):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePartParam(BaseModel):
    type: Literal["image_file"]
    image_file: ImageFileParam


class ImageUrlParam(SparseModel):
    url: Uri
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
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_TEXT)]
        | Annotated[list[ContentPartParam], Field(min_length=1, max_length=MAX_CONTENT_PARTS)]
    )
    attachments: list[Attachment] | None = Field(default=None, max_length=MAX_ATTACHMENTS)
    metadata: Metadata = None

    @model_validator(mode="after")
    def _text_in_all(self) -> MessageCreateParams:
        # Each part is bounded alone above; the bound is on the message's text, so on the parts together.
        if isinstance(self.content, list):
            total = sum(len(part.text) for part in self.content if isinstance(part, TextPartParam))
            if total > MAX_MESSAGE_TEXT:
                raise ParamValueError(
                    f"the text of a message may be at most {MAX_MESSAGE_TEXT} characters in all, "
                    f"not {total}.",
                    "content",
                )
        return self


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
