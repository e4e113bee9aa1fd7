"""The parameters of an ``/actions`` request: the query string, overlaid by the fields of a body.

The ``?action=`` function's clients send parameters either way (GET with a query string, POST with a JSON
body or a form), named in camelCase; each is read here as the type its action needs, and a refusal names
the parameter.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import BaseModel, ValidationError

from ..errors import InvalidRequestError
from ..protocol.common import ParamValueError, unstorable_reason
from ..store.pagination import PageQuery

M = TypeVar("M", bound=BaseModel)


class Params:
    """The request's parameters: the query string, overlaid by the fields of a JSON body."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    @classmethod
    async def of(cls, request: Request) -> Params:
        values: dict[str, Any] = dict(request.query_params)
        raw = await request.body()
        if raw.strip():
            body: Any = None
            try:
                body = json.loads(raw)
            except ValueError:
                # HTML forms and ``curl -d a=b`` post parameters URL-encoded.
                if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                    body = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            if not isinstance(body, dict):
                raise InvalidRequestError("The request body must be a JSON object of parameters.")
            values.update(body)
        return cls(values)

    def _string(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidRequestError(f"Invalid '{name}': expected a string.", param=name)
        if (reason := unstorable_reason(value)) is not None:
            # NUL (PostgreSQL) or a lone surrogate (UTF-8) cannot be stored: refused on every backend alike.
            raise InvalidRequestError(f"Invalid '{name}': {reason}", param=name)
        return value

    def required(self, name: str) -> str:
        value = self._string(name)
        if value is None or not value.strip():
            raise InvalidRequestError(f"Missing required parameter: '{name}'.", param=name)
        return value

    def optional(self, name: str) -> str | None:
        return self._string(name)

    def given(self, *names: str) -> dict[str, str]:
        """The optional string parameters among ``names`` that the request carries."""
        return {name: value for name in names if (value := self.optional(name)) is not None}

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._values.get(name)
        if value is None or value == "":
            return default
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer past float's range
            number = math.nan
        if not low < number <= high:
            raise InvalidRequestError(
                f"Invalid '{name}': expected a number above {low:g} and at most {high:g}.", param=name
            )
        return number

    def page(self) -> PageQuery:
        limit = self.number("limit", 20, 0, 100)
        if limit != int(limit):
            raise InvalidRequestError("Invalid 'limit': expected an integer from 1 to 100.", param="limit")
        order = self.optional("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequestError("Invalid 'order': expected 'asc' or 'desc'.", param="order")
        order_value: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"
        return PageQuery(
            limit=int(limit),
            order=order_value,
            after=self.optional("after") or None,
            before=self.optional("before") or None,
        )


def build(model: type[M], values: dict[str, Any]) -> M:
    """``model`` from parameters named as its fields, a refusal naming the parameter that failed."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ParamValueError):
            param, reason = cause.param, str(cause)
        else:
            param, reason = ".".join(str(part) for part in error["loc"]), error["msg"]
        raise InvalidRequestError(f"Invalid '{param}': {reason}", param=param) from None
