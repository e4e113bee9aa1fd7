"""Shapes shared by every resource: metadata, lists, deletions, tools, tool resources."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

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


# URIs -------------------------------------------------------------------------------------------

# An absolute URI as RFC 3986 writes it: a scheme, then only the characters a URI may hold (anything else
# percent-encoded). The wire schema declares image URLs ``format: uri``, and a message echoes its URL back:
# what the schema would refuse in the answer is refused in the request, naming it.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def check_uri(value: str) -> str:
    if not _URI.fullmatch(value):
        raise ValueError(
            "must be an absolute URL (a scheme such as https:, then only the characters a URL may hold; "
            "others percent-encoded)"
        )
    return value


Uri = Annotated[str, AfterValidator(check_uri)]


# Integers ---------------------------------------------------------------------------------------

INT32_MAX = 2**31 - 1

RequestInt = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
"""Every integer field of a request: a field narrows it to OpenAI's documented range with its own
``Field(ge=..., le=...)``. Where OpenAI gives no bound this one stays, because JSON integers are unbounded
and a value the database cannot hold (``Integer`` is 32-bit on PostgreSQL, SQLite stops at 64 bits) would
fail as a server error after the request was accepted, instead of being refused with the field named."""


class ParamValueError(ValueError):
    """A value refused for a reason that names its own parameter (validation locations cannot)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


# What no text column can store: NUL (PostgreSQL's text refuses it) and UTF-16 surrogates, which JSON can
# escape (``"\\ud800"``) but UTF-8 cannot encode (SQLite's driver and asyncpg fail on them). A pair of them is
# one character once parsed, so any surrogate left in a parsed string is a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable_reason(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    if "\x00" in text:
        return "Strings may not contain NUL (\\u0000) characters."
    if _SURROGATE.search(text):
        return "Strings may not contain lone UTF-16 surrogates (\\ud800-\\udfff): they are not Unicode text."
    return None


def _find_unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """Where in ``value`` a string holds a character no text column can store, and why it cannot."""
    if isinstance(value, str):
        reason = unstorable_reason(value)
        return (path, reason) if reason is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            within = f"{path}.{key}" if path else str(key)
            found = _find_unstorable(key, path) or _find_unstorable(item, within)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _find_unstorable(item, f"{path}[{index}]")) is not None:
                return found
    return None


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are refused, as OpenAI does."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _only_storable_text(cls, data: Any) -> Any:
        # Refused on every backend alike (SQLite would store NUL), naming where it was. pydantic refuses a
        # surrogate only in a string with constraints; anywhere else it reached the database, as a 500.
        if (found := _find_unstorable(data, "")) is not None:
            param, reason = found
            raise ParamValueError(reason, param or "body")
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


# A function's ``parameters`` schema goes to the model with every run that has the tool, and is walked by
# the code that adapts it per provider. OpenAI documents no bound; these keep one schema far below the body
# limit (128 tools of it fit) yet far above any real one.
MAX_SCHEMA_BYTES = 64 * 1024  # as compact UTF-8 JSON
MAX_SCHEMA_DEPTH = 32  # objects and arrays within one another


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _check_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    # Depth first: it bounds the recursion of serializing it for the size.
    if _depth(value) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"a schema may nest objects and arrays at most {MAX_SCHEMA_DEPTH} levels deep")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"a schema may be at most {MAX_SCHEMA_BYTES} bytes of JSON, not {size}")
    return value


JsonSchema = Annotated[dict[str, Any] | None, AfterValidator(_check_schema)]


class FunctionDefinition(SparseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: JsonSchema = None
    strict: bool | None = None


class FunctionTool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(SparseModel):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: float = Field(ge=0, le=1)


class FileSearchOptions(SparseModel):
    max_num_results: Annotated[RequestInt, Field(ge=1, le=50)] | None = None
    ranking_options: RankingOptions | None = None


class FileSearchTool(SparseModel):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(BaseModel):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]
Tools = Annotated[list[Tool], Field(max_length=128)]


# Chunking (of vector store files; here because the vector_stores helper of tool resources takes one too)


class StaticChunking(BaseModel):
    max_chunk_size_tokens: Annotated[RequestInt, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[RequestInt, Field(ge=0)]

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ParamValueError(
                "chunk_overlap_tokens must not exceed half of max_chunk_size_tokens.",
                "chunk_overlap_tokens",
            )
        return self


class AutoChunkingParam(RequestModel):
    type: Literal["auto"]


class StaticChunkingParam(RequestModel):
    type: Literal["static"]
    static: StaticChunking


ChunkingStrategyParam = Annotated[AutoChunkingParam | StaticChunkingParam, Field(discriminator="type")]


# Tool resources ---------------------------------------------------------------------------------

MAX_CODE_INTERPRETER_FILES = 20
MAX_VECTOR_STORES = 1
# The most file ids one request may name for a new vector store (``file_ids`` of vector store creation).
MAX_NEW_STORE_FILES = 500


class CodeInterpreterResources(SparseModel):
    file_ids: list[str] = Field(default_factory=list, max_length=MAX_CODE_INTERPRETER_FILES)


@with_config(ConfigDict(extra="forbid"))
class VectorStoreHelper(TypedDict, total=False):
    """One store the ``vector_stores`` helper is asked to make: validated with the request, so that a bad
    one is refused, with its field named, before anything is written. A dict rather than a model because
    the store code reads it as the body of a vector store creation."""

    file_ids: Annotated[list[str], Field(max_length=MAX_NEW_STORE_FILES)]
    chunking_strategy: ChunkingStrategyParam
    metadata: Metadata


class FileSearchResources(SparseModel):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=MAX_VECTOR_STORES)
    vector_stores: list[VectorStoreHelper] | None = Field(
        default=None, max_length=MAX_VECTOR_STORES, exclude=True
    )


class ToolResources(SparseModel):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None

    @model_validator(mode="after")
    def _one_vector_store_in_all(self) -> ToolResources:
        # Each list alone is checked by its max_length; ids and helper together would attach two stores,
        # which OpenAI (and the response's own schema) does not allow.
        search = self.file_search
        attached = len(search.vector_store_ids) + len(search.vector_stores or []) if search else 0
        if attached > MAX_VECTOR_STORES:
            raise ParamValueError(
                f"There can be a maximum of {MAX_VECTOR_STORES} vector store attached: give either "
                "'vector_store_ids' or 'vector_stores', not both.",
                "file_search",
            )
        return self


# Model options ----------------------------------------------------------------------------------


class ResponseFormatText(BaseModel):
    type: Literal["text"]


class ResponseFormatJsonObject(BaseModel):
    type: Literal["json_object"]


class JsonSchemaFormat(SparseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: JsonSchema = Field(default=None, alias="schema")
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
