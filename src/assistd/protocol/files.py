"""File objects, their deletion, and the form fields of an upload."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .common import RequestInt, RequestModel, SparseModel, WireModel

# The purposes an upload may name (the SDK's ``FilePurpose``); ``*_output`` purposes are only ever
# given by the server to files it makes itself.
FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]

# By OpenAI's rule, batch inputs expire after 30 days unless the upload says otherwise.
BATCH_EXPIRY_SECONDS = 30 * 24 * 3600


class FileObject(SparseModel, WireModel):
    # Sparse: OpenAI's schema types expires_at and status_details as present-or-absent, never null.
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(WireModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class ExpiresAfter(RequestModel):
    anchor: Literal["created_at"]
    seconds: Annotated[RequestInt, Field(ge=3600, le=2_592_000)]


class FileCreateFields(RequestModel):
    """The form fields of an upload besides the file itself."""

    purpose: FilePurpose
    expires_after: ExpiresAfter | None = None
