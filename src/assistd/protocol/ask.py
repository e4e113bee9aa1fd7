"""The /ask session service: the body of a question, its answer, and sessions as they are listed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import RequestModel, WireModel


class AskParams(RequestModel):
    session_id: str = Field(min_length=1, max_length=256)
    user_input: str = Field(min_length=1, max_length=256_000)
    # An assistant's name or id; unset: the session's assistant, else ASSISTD_ASK_DEFAULT_ASSISTANT, else
    # the tenant's built-in default assistant.
    assistant: str | None = Field(default=None, min_length=1, max_length=256)
    stream: bool | None = None


class AskAnswer(WireModel):
    session_id: str
    response: str
    thread_id: str
    run_id: str


class AskDelta(WireModel):
    """One piece of the answer's text, as ``stream`` sends it before the final ``AskAnswer``."""

    delta: str


class AskSession(WireModel):
    id: str
    object: Literal["ask.session"] = "ask.session"
    created_at: int
    updated_at: int
    thread_id: str
    assistant_id: str


class AskMessage(WireModel):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: int
    run_id: str | None


class AskSessionDetail(AskSession):
    # Oldest first: the conversation as it reads.
    messages: list[AskMessage]
