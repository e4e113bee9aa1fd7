from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

_any = TypeAdapter(Any)


def dump(value: Any) -> Any:
    """Plain JSON data for a JSON column, from pydantic models, lists of them, or plain values."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True, by_alias=True)
    return _any.dump_python(value, mode="json", exclude_none=True, by_alias=True)
