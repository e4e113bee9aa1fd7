"""Shapes shared by every resource: metadata, lists, deletions, tools, tool resources."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

T = TypeVar("T")

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"metadata can have at most {MAX_METADATA_PAIRS} key-value pairs")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY:
            raise ValueError(f"metadata keys can be at most {MAX_METADATA_KEY} characters long")
        if len(item) > MAX_METADATA_VALUE:
            raise ValueError(f"metadata values can be at most {MAX_METADATA_VALUE} characters long")
    return value


Metadata = Annotated[dict[str, str] | None, AfterValidator(_check_metadata)]


class ParamValueError(ValueError):
    """A value refused for a reason that names its own parameter (validation locations cannot)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _find_nul(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_nul(key, path) or _find_nul(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _find_nul(item, f"{path}[{index}]")) is not None:
                return found
    return None


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are refused, as OpenAI does."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL text cannot store NUL; refuse it on every backend alike, naming where it was.
        if (param := _find_nul(data, "")) is not None:
            raise ParamValueError("Strings may not contain NUL (\\u0000) characters.", param or "body")
        return data


class WireModel(BaseModel):
    """Base of response objects."""

    model_config = ConfigDict(extra="forbid")


class ListPage(WireModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedObject(WireModel):
    id: str
    object: str
    deleted: bool = True


class SparseModel(BaseModel):
    """A nested wire object whose unset options are left out, as OpenAI does, rather than sent as null."""

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


# Tools ------------------------------------------------------------------------------------------


class FunctionDefinition(SparseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(SparseModel):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: float = Field(ge=0, le=1)


class FileSearchOptions(SparseModel):
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FileSearchTool(SparseModel):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(BaseModel):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]
Tools = Annotated[list[Tool], Field(max_length=128)]


class CodeInterpreterResources(SparseModel):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class FileSearchResources(SparseModel):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=1)
    vector_stores: list[dict[str, Any]] | None = Field(default=None, max_length=1, exclude=True)


class ToolResources(SparseModel):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


# Model options ----------------------------------------------------------------------------------


class ResponseFormatText(BaseModel):
    type: Literal["text"]


class ResponseFormatJsonObject(BaseModel):
    type: Literal["json_object"]


class JsonSchemaFormat(SparseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatJsonSchema(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema, Field(discriminator="type")
    ]
)

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
