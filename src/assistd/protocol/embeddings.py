"""``POST /v1/embeddings``: the request body, checked as OpenAI checks it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, model_validator

from .common import ParamValueError, RequestInt, RequestModel

__all__ = ["MAX_INPUTS", "EmbeddingCreateParams", "EmbeddingInput"]

# OpenAI's limit on the inputs of one request.
MAX_INPUTS = 2048

# Strict: pydantic would otherwise read "12" as a token id and 3 as a text.
EmbeddingInput = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class EmbeddingCreateParams(RequestModel):
    model: StrictStr
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[RequestInt, Field(ge=1)] | None = None
    user: StrictStr | None = None

    @model_validator(mode="after")
    def _inputs(self) -> EmbeddingCreateParams:
        if self.input == "":
            raise ParamValueError("'input' cannot be an empty string.", "input")
        if not self.input:
            raise ParamValueError("'input' cannot be an empty list.", "input")
        inputs = self.token_arrays if self.is_tokens else self.texts
        if len(inputs) > MAX_INPUTS:
            raise ParamValueError(
                f"'input' holds {len(inputs)} inputs; at most {MAX_INPUTS} are allowed per request.", "input"
            )
        for index, item in enumerate(inputs):
            if not item:
                what = "string" if isinstance(item, str) else "token array"
                raise ParamValueError(
                    f"input[{index}] is an empty {what}; every input must be non-empty.", "input"
                )
        return self

    @property
    def is_tokens(self) -> bool:
        """Whether ``input`` holds token ids rather than text."""
        return isinstance(self.input, list) and not isinstance(self.input[0], str)

    @property
    def texts(self) -> list[str]:
        """The text inputs in order (``is_tokens`` is false)."""
        return (
            [self.input]
            if isinstance(self.input, str)
            else [item for item in self.input if isinstance(item, str)]
        )

    @property
    def token_arrays(self) -> list[list[int]]:
        """The token-id inputs in order, one array per input (``is_tokens`` is true)."""
        if isinstance(self.input, str):
            return []
        if self.input and isinstance(self.input[0], int):
            return [[item for item in self.input if isinstance(item, int)]]
        return [item for item in self.input if isinstance(item, list)]
