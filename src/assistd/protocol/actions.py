"""The answers of ``/actions``, the ``?action=`` function that front ends built on the Assistants API call.

The original function wrapped every answer in ``{"success", "data", "error"}``; its users parse that, so
assistd keeps the envelope and puts OpenAI's own objects in ``data``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .runs import Run, RunStatus


class ActionResult(BaseModel):
    success: bool
    # Any, not a union of wire models: pydantic then serialises each object by its own type, so ``data`` is
    # byte for byte what /v1 answers for it.
    data: Any = None
    error: str | None = None


class RunReply(BaseModel):
    """What ``run-assistant`` answers: the reply text and the run that wrote it.

    The field names are camelCase because the original function's clients read ``threadId`` and
    ``response``.
    """

    threadId: str
    runId: str
    status: RunStatus
    response: str
    run: Run
