"""Vector stores, their files and file batches, search, and the bodies that create and change them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, FiniteFloat, model_validator

from .common import (
    MAX_NEW_STORE_FILES,
    AutoChunkingParam,
    Metadata,
    ParamValueError,
    RequestInt,
    RequestModel,
    SparseModel,
    StaticChunkingParam,
    WireModel,
)
from .common import ChunkingStrategyParam as ChunkingStrategyParam

MAX_ATTRIBUTES = 16
MAX_FILES_PER_STORE = 10_000
MAX_BATCH_FILES = 2_000

AttributeValue = str | float | bool
# Finite: JSON bodies may carry NaN and Infinity, which PostgreSQL's json type refuses (a server error).
# Only requests are held to it, so a value stored before is still shown.
AttributeParam = str | FiniteFloat | bool


def _check_attributes(value: dict[str, AttributeParam] | None) -> dict[str, AttributeParam] | None:
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"attributes can have at most {MAX_ATTRIBUTES} key-value pairs")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError("attribute keys can be at most 64 characters long")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError("attribute string values can be at most 512 characters long")
    return value


Attributes = Annotated[dict[str, AttributeParam] | None, AfterValidator(_check_attributes)]


# Chunking (the strategies' models are in ``common``: tool resources' vector_stores helper takes one too) ---

AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400


def resolved_chunking(param: AutoChunkingParam | StaticChunkingParam | None) -> dict[str, Any]:
    """The strategy as a file reports it: ``auto`` is reported as the static sizes it stands for."""
    if isinstance(param, StaticChunkingParam):
        return {"type": "static", "static": param.static.model_dump()}
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": AUTO_MAX_TOKENS, "chunk_overlap_tokens": AUTO_OVERLAP_TOKENS},
    }


# Vector stores ----------------------------------------------------------------------------------


class ExpiresAfter(BaseModel):
    anchor: Literal["last_active_at"]
    days: Annotated[RequestInt, Field(ge=1, le=365)]


class FileCounts(WireModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class VectorStore(WireModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    # Left out rather than null when unset: OpenAI's schema has no null for it.
    expires_after: ExpiresAfter | None = Field(default=None, exclude_if=lambda value: value is None)
    expires_at: int | None
    last_active_at: int | None
    metadata: dict[str, str]


class VectorStoreCreateParams(RequestModel):
    file_ids: list[str] = Field(default_factory=list, max_length=MAX_NEW_STORE_FILES)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategyParam | None = None
    metadata: Metadata = None


class VectorStoreUpdateParams(RequestModel):
    name: str | None = Field(default=None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Metadata = None


# Vector store files and batches -----------------------------------------------------------------


class LastError(WireModel):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class VectorStoreFile(WireModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    usage_bytes: int
    last_error: LastError | None
    chunking_strategy: dict[str, Any]
    attributes: dict[str, AttributeValue]


class VectorStoreFileCreateParams(RequestModel):
    file_id: str = Field(min_length=1)
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategyParam | None = None


class VectorStoreFileUpdateParams(RequestModel):
    attributes: Attributes


class BatchFile(RequestModel):
    file_id: str = Field(min_length=1)
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategyParam | None = None


class FileBatchCreateParams(RequestModel):
    file_ids: list[str] | None = Field(default=None, max_length=MAX_BATCH_FILES)
    files: list[BatchFile] | None = Field(default=None, max_length=MAX_BATCH_FILES)
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategyParam | None = None

    @model_validator(mode="after")
    def _one_way_to_name_files(self) -> FileBatchCreateParams:
        if self.file_ids is not None and self.files is not None:
            raise ParamValueError("Provide either 'file_ids' or 'files', not both.", "files")
        if not (self.file_ids or self.files):
            raise ParamValueError("A batch needs at least one file in 'file_ids' or 'files'.", "file_ids")
        return self

    def entries(self) -> list[BatchFile]:
        if self.files is not None:
            return self.files
        # Built from fields already validated, not validated again: a ``file_ids`` entry that names no file
        # ("" too) is refused where files are looked up, naming ``file_ids[i]``, as at store creation;
        # validating it here raised past the request's validation, a 500.
        return [
            BatchFile.model_construct(
                file_id=file_id, attributes=self.attributes, chunking_strategy=self.chunking_strategy
            )
            for file_id in self.file_ids or []
        ]


class VectorStoreFileBatch(WireModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


class FileContentPart(WireModel):
    type: Literal["text"] = "text"
    text: str


class FileContentPage(WireModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[FileContentPart]
    has_more: bool = False
    next_page: str | None = None


# Search -----------------------------------------------------------------------------------------


class ComparisonFilter(RequestModel):
    key: str
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    value: str | float | bool | list[str | float]


class CompoundFilter(RequestModel):
    type: Literal["and", "or"]
    filters: list[ComparisonFilter | CompoundFilter] = Field(min_length=1)


Filter = ComparisonFilter | CompoundFilter


class SearchRankingOptions(RequestModel):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(default=0.0, ge=0, le=1)


SearchMode = Literal["hybrid", "dense", "keyword"]


class VectorStoreSearchParams(RequestModel):
    query: str | list[str]
    max_num_results: Annotated[RequestInt, Field(ge=1, le=50)] = 10
    filters: Filter | None = None
    ranking_options: SearchRankingOptions | None = None
    rewrite_query: bool = False
    # An assistd extension for measuring retrieval: which of the two indexes answers.
    search_mode: SearchMode = "hybrid"

    @model_validator(mode="after")
    def _query_not_empty(self) -> VectorStoreSearchParams:
        queries = [self.query] if isinstance(self.query, str) else self.query
        if not queries or not any(q.strip() for q in queries):
            raise ParamValueError("'query' must be a non-empty string or list of strings.", "query")
        return self

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else [q for q in self.query if q.strip()]


class SearchResult(SparseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, AttributeValue] | None = None
    content: list[FileContentPart]


class SearchResultsPage(WireModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None
