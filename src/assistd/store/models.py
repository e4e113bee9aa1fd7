"""SQLAlchemy models: one table per OpenAI object, plus the run queue.

Every table has an integer ``pk`` that grows with insertion order; lists page on it, so the cost of a page
does not depend on how many rows come before it. The public ``id`` is a separate unique column.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, synonym

PkType = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class _Object:
    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)


class AssistantRow(_Object, Base):
    __tablename__ = "assistants"
    __table_args__ = (Index("ix_assistants_tenant_pk", "tenant", "pk"),)

    name: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(512))
    model: Mapped[str] = mapped_column(String(256))
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    tool_resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    temperature: Mapped[float | None] = mapped_column(Float)
    top_p: Mapped[float | None] = mapped_column(Float)
    response_format: Mapped[Any] = mapped_column(JSON, nullable=True)
    reasoning_effort: Mapped[str | None] = mapped_column(String(16))


class ThreadRow(_Object, Base):
    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_tenant_pk", "tenant", "pk"),)

    tool_resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set and cleared with conditional UPDATEs: the one place that guarantees one active run per thread.
    active_run_id: Mapped[str | None] = mapped_column(String(64))


class MessageRow(_Object, Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_thread_pk", "thread_id", "pk"),
        Index("ix_messages_run", "run_id"),
    )

    thread_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    assistant_id: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    incomplete_at: Mapped[int | None] = mapped_column(BigInteger)
    # The logprobs of the text's tokens, as the model gave them, when its run asked for them (a response's
    # include ``message.output_text.logprobs``); None otherwise. The Assistants API has no place for them.
    logprobs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class RunRow(_Object, Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_thread_pk", "thread_id", "pk"),
        Index("ix_runs_status_expires", "status", "expires_at"),
    )

    thread_id: Mapped[str] = mapped_column(String(64))
    # None for the run of a response (/v1/responses), which has no assistant; shown as "" (wire Run).
    assistant_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(256))
    instructions: Mapped[str] = mapped_column(Text)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    temperature: Mapped[float | None] = mapped_column(Float)
    top_p: Mapped[float | None] = mapped_column(Float)
    max_prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    max_completion_tokens: Mapped[int | None] = mapped_column(Integer)
    truncation_strategy: Mapped[dict[str, Any]] = mapped_column(JSON)
    tool_choice: Mapped[Any] = mapped_column(JSON)
    parallel_tool_calls: Mapped[bool] = mapped_column(Boolean)
    response_format: Mapped[Any] = mapped_column(JSON)
    reasoning_effort: Mapped[str | None] = mapped_column(String(16))
    required_action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    # The managed key (its fingerprint) that created the run, whose daily token count its usage adds to;
    # None for a static or no key, whose usage is not counted per key.
    api_key_id: Mapped[str | None] = mapped_column(String(64))
    # The step ids this run's include[] asked for are not stored: include is a read-time option.
    # Whether the model is asked for its tokens' logprobs (a response's include), with how many likeliest
    # alternatives each; None: not asked.
    top_logprobs: Mapped[int | None] = mapped_column(Integer)


class RunStepRow(_Object, Base):
    __tablename__ = "run_steps"
    __table_args__ = (Index("ix_run_steps_run_pk", "run_id", "pk"),)

    run_id: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(64))
    # Its run's: None for a response's run.
    assistant_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    step_details: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expired_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    # What built-in tool calls (file_search, code_interpreter) showed the model, by call id: the wire
    # shape of their step has no place for it, and the next turn's context needs it.
    tool_io: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ResponseRow(_Object, Base):
    """A response of /v1/responses: a run (``run_id``) on a thread, in another wire format. The run holds
    what it did (status, usage, the messages it wrote); this row holds what the Responses API adds: the
    request's options echoed back, the chain (``previous_response_id``), the conversation named, and the
    ids of the messages that were its input. Only stored responses (``store`` true) have a row."""

    __tablename__ = "responses"
    __table_args__ = (
        Index("ix_responses_run", "run_id"),
        # Retention (``store.responses.prune``) finds the oldest ones.
        Index("ix_responses_created_at", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(64))
    # The conversation the request named (its id as given), None for a thread of the response's own.
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    # The request's options as the response object shows them (instructions, text, tools, user...).
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The messages the response's input added to its thread, in input order.
    input_message_ids: Mapped[list[str]] = mapped_column(JSON)


class RunJobRow(Base):
    """A run waiting for, or held by, a worker. Deleted when the run leaves queued/in_progress."""

    __tablename__ = "run_jobs"
    __table_args__ = (Index("ix_run_jobs_locked_until", "locked_until"),)

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    enqueued_at: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The process that held the thread's live code_interpreter session when the run was queued: while that
    # process lives, only it claims the run, so the run finds the session's variables (store/jobs.py).
    session_holder: Mapped[str | None] = mapped_column(String(128))


class FileRow(_Object, Base):
    """An uploaded file. Its bytes live in the storage backend under ``storage_key``."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_tenant_pk", "tenant", "pk"),)

    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="processed")
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    # The managed key that uploaded it (its fingerprint): whose storage quota it counts against.
    api_key_id: Mapped[str | None] = mapped_column(String(64), default=None)


class VectorStoreRow(_Object, Base):
    __tablename__ = "vector_stores"
    __table_args__ = (Index("ix_vector_stores_tenant_pk", "tenant", "pk"),)

    name: Mapped[str | None] = mapped_column(String(256))
    expires_after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    last_active_at: Mapped[int | None] = mapped_column(BigInteger)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped whenever the store's chunks change, so an in-memory copy of its vectors knows it is stale.
    generation: Mapped[int] = mapped_column(Integer, default=0)


class VectorStoreFileRow(Base):
    """A file's membership in a vector store; its public id is the file's id."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        Index("ux_vector_store_files_store_file", "vector_store_id", "file_id", unique=True),
        Index("ix_vector_store_files_store_pk", "vector_store_id", "pk"),
        Index("ix_vector_store_files_batch", "batch_id"),
        Index("ix_vector_store_files_file", "file_id"),
    )

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    chunking_strategy: Mapped[dict[str, Any]] = mapped_column(JSON)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    # Pages are keyed by ``id`` like every other list; a store's file is named by its file's id.
    id: Mapped[str] = synonym("file_id")


class FileBatchRow(Base):
    __tablename__ = "vector_store_file_batches"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    vector_store_id: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)


class ChunkRow(Base):
    """One searchable passage of a file in a vector store, with its embedding as float32 bytes.

    Both search indexes (vectors and BM25) are built in memory from these rows: see ``retrieval.index``."""

    __tablename__ = "chunks"
    __table_args__ = (
        Index("ix_chunks_store_pk", "vector_store_id", "pk"),
        Index("ix_chunks_store_file", "vector_store_id", "file_id"),
    )

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class EmbeddingCacheRow(Base):
    """Embeddings by content: ``key`` is a hash of the embedder's name and the chunk text."""

    __tablename__ = "embedding_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class IngestJobRow(Base):
    """A vector store file waiting for, or held by, an ingestion worker; ``job_id`` is ``store/file``."""

    __tablename__ = "ingest_jobs"
    __table_args__ = (Index("ix_ingest_jobs_locked_until", "locked_until"),)

    job_id: Mapped[str] = mapped_column(String(140), primary_key=True)
    enqueued_at: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class AskSessionRow(Base):
    """A session of the /ask service: the client's ``id`` (unique per tenant) → a thread and an assistant."""

    __tablename__ = "ask_sessions"
    __table_args__ = (
        Index("ux_ask_sessions_tenant_id", "tenant", "id", unique=True),
        Index("ix_ask_sessions_tenant_pk", "tenant", "pk"),
    )

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    # Chosen by the client, so two tenants may well use the same one.
    id: Mapped[str] = mapped_column(String(256))
    tenant: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(64))
    assistant_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class AskDefaultRow(Base):
    """The tenant's built-in /ask assistant: the one it answers with when nothing names another.

    The tenant is the primary key, so concurrent first calls cannot each record an assistant of their
    own: the second insert fails and that call uses the first's. ``assistant_id`` may name a deleted
    assistant (a user may delete it); the next call then replaces it.
    """

    __tablename__ = "ask_defaults"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(String(64))


class RunEventRow(Base):
    """One event of a run's stream, in the order its ``seq`` gives: the log every replica reads a run's
    events from, so a stream or a long poll can be served by a process other than the one executing the
    run, and a client that reconnects can resume after the last ``seq`` it saw."""

    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event: Mapped[str] = mapped_column(String(64))
    # The event's JSON as the stream sends it: written once, never parsed on the way out.
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class RunEventHeadRow(Base):
    """The last ``seq`` given out for a run. Its row lock is what orders two writers of one run's events
    (the worker executing it, a replica cancelling it): the second waits for the first to commit, then
    numbers after it, so a reader never sees a later seq before an earlier one."""

    __tablename__ = "run_event_heads"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)


class BlobRow(Base):
    """A file's bytes kept in the database (``DatabaseFileStorage``), so every host can read them. The
    row is written first, ``complete`` false; its chunks follow in transactions of their own (an upload
    never holds one transaction open); ``complete`` turns true with the last. Readers only see complete
    blobs; an upload that died leaves an incomplete one for the maintenance sweep."""

    __tablename__ = "blobs"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class BlobChunkRow(Base):
    __tablename__ = "blob_chunks"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RateBucketRow(Base):
    """A token bucket of the request rate limit, shared by every replica: one row per limited key, read
    and refilled in the same UPSERT that spends from it."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # Whether the last request got a token: the UPSERT's RETURNING cannot tell it from ``tokens`` alone.
    granted: Mapped[bool] = mapped_column(Boolean)


class ProcessRow(Base):
    """A live assistd process (an API replica, a worker, or both), refreshed by its heartbeat: what lets
    the others see who is there, share what must be shared (the upstream's concurrency), and notice who
    is gone (a row not seen for a lease time)."""

    __tablename__ = "processes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # "api", "worker" or "both"
    started_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float)


class CodeSessionRow(Base):
    """A thread's code_interpreter session: the process whose sandbox holds it (or last held it) and that
    session's id, whether it still runs, and the files the thread's code wrote (path under the session's
    directory → file id). Runs of the thread go to ``process_id`` while ``live`` and the process lives; a
    session started anywhere else first gets ``files`` back (tools/code_interpreter.py)."""

    __tablename__ = "code_sessions"

    thread_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    live: Mapped[bool] = mapped_column(Boolean)
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class ApiKeyRow(Base):
    """A key managed in the database (``assistd keys create``, ``/admin/keys``). The key itself is never
    stored: only its SHA-256, by which a request's key is looked up, and its public fingerprint (``id``)."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    tenant_name: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    # Quotas; None: the server's default (requests) or none (tokens, storage).
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger)
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger)


class ApiKeyUsageRow(Base):
    """Model tokens a managed key's runs used on one UTC day (``YYYY-MM-DD``)."""

    __tablename__ = "api_key_usage"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
