"""``include`` in a query string (``GET`` of responses and conversation items): OpenAI's SDK sends it as
``include[]=…`` or ``include=…``; both are taken, checked against what OpenAI's ``include`` may ask for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from ..errors import InvalidRequestError
from ..protocol.responses import INCLUDABLE

IncludeBrackets = Annotated[list[str] | None, Query(alias="include[]")]
IncludePlain = Annotated[list[str] | None, Query(alias="include")]


def checked_include(brackets: list[str] | None, plain: list[str] | None) -> list[str]:
    """The values asked for, in order; an unknown one is a 400 naming ``include[i]``."""
    values = [*(brackets or []), *(plain or [])]
    for index, value in enumerate(values):
        if value not in INCLUDABLE:
            raise InvalidRequestError(
                f"Invalid value for 'include': '{value}'. Supported: {', '.join(INCLUDABLE)}.",
                param=f"include[{index}]",
                code="invalid_value",
            )
    return values
