"""The one error hierarchy of assistd.

Services raise these; ``api.errors`` renders every one of them as OpenAI's error body
``{"error": {"message", "type", "param", "code"}}`` with the class's HTTP status.
"""

from __future__ import annotations

__all__ = [
    "AssistdError",
    "AuthenticationError",
    "ConflictError",
    "InsufficientStorageError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "StorageLimitError",
    "TokenRateLimitError",
    "UpstreamError",
]


class AssistdError(Exception):
    status_code: int = 500
    type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequestError(AssistdError):
    status_code = 400
    type = "invalid_request_error"


class ConflictError(InvalidRequestError):
    """A request that is well-formed but not allowed in the object's current state (OpenAI answers 400)."""


class AuthenticationError(AssistdError):
    status_code = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(AssistdError):
    status_code = 403
    type = "invalid_request_error"


class NotFoundError(AssistdError):
    status_code = 404
    type = "invalid_request_error"


class RateLimitError(AssistdError):
    """Over a rate limit. OpenAI's ``type`` names the limit reached: ``requests`` here (OpenAI also has
    ``tokens``)."""

    status_code = 429
    type = "requests"
    default_code = "rate_limit_exceeded"


class TokenRateLimitError(RateLimitError):
    """Over a managed key's tokens per day."""

    type = "tokens"


class StorageLimitError(RateLimitError):
    """Over a managed key's storage quota (an assistd limit: OpenAI names no such type)."""

    type = "storage"


class ServerError(AssistdError):
    status_code = 500
    type = "server_error"


class UpstreamError(AssistdError):
    """The model provider failed in a way retries could not fix; ``code`` is a run ``last_error`` code."""

    status_code = 502
    type = "server_error"
    default_code = "server_error"


class InsufficientStorageError(AssistdError):
    """No room left to store what the request sent. 507, not 503: the disk will not free itself in the
    seconds a ``retry-after`` would ask a client to wait."""

    status_code = 507
    type = "server_error"
    default_code = "insufficient_storage"
