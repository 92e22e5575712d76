"""One settings object for every process (API, worker, beat, CLI), read from `OCCULTA_*` variables.

Embedded mode needs no configuration at all: everything defaults to files under `data_dir`. Production
sets the URLs of PostgreSQL, Redis and S3 and a real secret; the validator refuses to start a production
process on values that only make sense on one laptop (placeholder secret, SQLite, the SQLite broker),
because those fail later and quietly: SQLite cannot be shared by several API and worker pods, and a
placeholder secret signs dashboard sessions anyone can forge.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from occulta.cards import MAX_MODEL_PARAMS

GiB = 1024**3
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "change_me", "secret", "development", "dev"})
DEV_SECRET = "changeme"
PRODUCER_CONNECT_TIMEOUT = 2.0  # a dead broker is detected this fast
PRODUCER_SEND_TIMEOUT = 10.0  # a live but busy broker gets this long


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCCULTA_", env_file=None, extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./occulta-data")
    database_url: str = Field(default="", description="default: sqlite:///{data_dir}/occulta.db")
    broker_url: str = Field(default="", description="default: sqla+sqlite:///{data_dir}/broker.db")
    result_backend_url: str = Field(
        default="",
        description="Celery results (shard chords count on it); default: the Redis broker, or "
        "db+sqlite:///{data_dir}/results.db in embedded mode",
    )
    queue: str = Field(default="occulta", description="Celery queue the audits go to")
    storage_url: str = Field(default="", description="file://{data_dir}/objects or s3://bucket/prefix")
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    max_upload_bytes: int = 2 * GiB
    max_extract_bytes: int = 8 * GiB
    max_archive_members: int = 200_000
    audit_soft_time_limit: int = 3600
    audit_hard_time_limit: int = 3900
    audit_max_attempts: int = 3
    heartbeat_stale_seconds: int = 300
    sweep_interval_seconds: int = 60
    worker_concurrency: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    shard_size: int = Field(
        default=2000, ge=0, description="audits over more images than this are split into shards; 0: never"
    )
    shard_max_retries: int = Field(default=3, ge=0, description="retries of one failed shard, alone")
    worker_max_tasks_per_child: int = Field(
        default=50, ge=1, description="tasks a worker child runs before it is replaced (frees its memory)"
    )
    model_cache_size: int = Field(
        default=1, ge=0, description="models a worker child keeps loaded across tasks (shards of one job)"
    )
    presign_expiry_seconds: int = 600
    # Sharing the fleet (`occulta.jobs.fairness`): tenants take turns for the worker slots.
    dispatch_slots: int = Field(
        default=8,
        ge=1,
        description="audits sent to the workers at once (the fleet's slots: worker pods x concurrency, "
        "at the autoscaler's maximum); the rest wait in per-tenant lines served in turn",
    )
    tenant_max_running: int = Field(
        default=0, ge=0, description="audits of one tenant sent or running at once; 0: no cap beyond its turn"
    )
    tenant_max_active: int = Field(
        default=1000, ge=0, description="queued + running audits one tenant may hold (429 above); 0: no limit"
    )
    tenant_retry_after_seconds: int = Field(
        default=30, ge=1, description="`Retry-After` of a 429 for a tenant at its limit"
    )
    worker_gpu_memory_gib: float | None = Field(
        default=None,
        gt=0,
        description="memory of the workers' GPUs; when set, a model whose single forward cannot fit is "
        "refused at submission",
    )
    wait_max_seconds: float = Field(
        default=30.0, ge=0, le=120, description="longest a `GET /v1/audits/{id}?wait=` long-poll is held"
    )
    wait_max_clients: int = Field(
        default=10_000, ge=0, description="long-polls held at once per API process; past it, answered at once"
    )
    wait_tick_seconds: float = Field(
        default=0.25, gt=0, le=5, description="how often one query reads the status of every watched audit"
    )
    # Capacity of one API process. Every sync route runs on one of `api_threads` threads and holds one
    # pooled connection while it runs, so the pool is sized from the threads, never below them.
    api_threads: int = Field(default=32, ge=1, le=512, description="threads serving sync routes")
    db_pool_size: int = Field(default=0, ge=0, description="pooled connections; 0: max_active_requests + 4")
    db_max_overflow: int = Field(default=8, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0, description="seconds to wait for a connection")
    db_connect_timeout: int = Field(default=5, ge=1, description="seconds to wait for the server")
    max_active_requests: int = Field(
        default=0, ge=0, description="requests inside the app at once; 0: api_threads"
    )
    max_waiting_requests: int = Field(
        default=4096, ge=1, description="requests waiting for a slot beyond which the API answers 503"
    )
    max_wait_seconds: float = Field(default=60.0, gt=0, description="wait for a slot before a 503")
    retry_after_seconds: int = Field(default=5, ge=1, description="`Retry-After` of a 503")
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024, description="cap of a JSON request body")
    max_model_params: int = Field(
        default=MAX_MODEL_PARAMS, ge=1, description="parameters a model card may build (ViT-B is 86M)"
    )

    @model_validator(mode="after")
    def _defaults_and_production_rules(self) -> Settings:
        data = self.data_dir.expanduser().resolve()
        self.data_dir = data
        if not self.database_url:
            self.database_url = f"sqlite:///{data}/occulta.db"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{data}/broker.db"
        if not self.storage_url:
            self.storage_url = f"file://{data}/objects"
        if not self.result_backend_url:
            self.result_backend_url = (
                f"db+sqlite:///{data}/results.db" if self.broker_url.startswith("sqla+") else self.broker_url
            )
        if not self.max_active_requests:
            self.max_active_requests = self.api_threads
        if not self.db_pool_size:
            # One connection per request inside the app, and spare ones for probes and metrics.
            self.db_pool_size = self.max_active_requests + 4
        if self.db_pool_size + self.db_max_overflow <= self.max_active_requests:
            raise ValueError(
                "OCCULTA_DB_POOL_SIZE + OCCULTA_DB_MAX_OVERFLOW must exceed OCCULTA_MAX_ACTIVE_REQUESTS: "
                "every request inside the API may hold a connection"
            )
        if self.audit_hard_time_limit <= self.audit_soft_time_limit:
            raise ValueError(
                "OCCULTA_AUDIT_HARD_TIME_LIMIT must be larger than OCCULTA_AUDIT_SOFT_TIME_LIMIT"
            )
        if self.env == "production":
            problems = self.production_problems()
            if problems:
                raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """What would make a production deployment unsafe or broken (empty when it is fine)."""
        problems = []
        if (
            self.secret_key.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
            or len(self.secret_key.get_secret_value()) < 16
        ):
            problems.append("OCCULTA_SECRET_KEY is a placeholder or shorter than 16 characters")
        if self.database_url.startswith("sqlite"):
            problems.append("OCCULTA_DATABASE_URL is SQLite; use PostgreSQL (several pods share it)")
        if self.broker_url.startswith("sqla+"):
            problems.append("OCCULTA_BROKER_URL is the SQLAlchemy transport; use Redis")
        return problems

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def storage_scheme(self) -> str:
        return urlparse(self.storage_url).scheme

    @property
    def visibility_timeout(self) -> int:
        """Above the hard limit, so Redis never redelivers a task that is still legitimately running."""
        return self.audit_hard_time_limit + 600

    def engine_options(self) -> dict[str, Any]:
        """Pool options for `make_engine`: enough connections for every API thread, a bounded wait."""
        if self.is_sqlite:
            return {}
        return {
            "pool_size": self.db_pool_size,
            "max_overflow": self.db_max_overflow,
            "pool_timeout": self.db_pool_timeout,
            "connect_args": {"connect_timeout": self.db_connect_timeout},
        }

    def ensure_dirs(self) -> None:
        """Create the embedded-mode directories (SQLite files and the object folder need a parent)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.storage_scheme == "file":
            Path(urlparse(self.storage_url).path).mkdir(parents=True, exist_ok=True)

    def celery_config(self) -> dict[str, Any]:
        """Celery settings shared by the API (producer) and the worker; plain data so `occulta`
        stays free of celery imports."""
        # The SQLAlchemy transport hands its options to create_engine and never redelivers unacked
        # messages, so the visibility timeout only applies to Redis (and SQS-like brokers).
        transport_options = (
            {} if self.broker_url.startswith("sqla+") else {"visibility_timeout": self.visibility_timeout}
        )
        return {
            "broker_url": self.broker_url,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": transport_options,
            "result_backend": self.result_backend_url,
            "result_expires": 24 * 3600,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "task_ignore_result": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "task_default_queue": self.queue,
            "task_soft_time_limit": self.audit_soft_time_limit,
            "task_time_limit": self.audit_hard_time_limit,
            "worker_prefetch_multiplier": 1,
            "worker_max_tasks_per_child": self.worker_max_tasks_per_child,
            "worker_concurrency": self.worker_concurrency,
            "worker_hijack_root_logger": False,
        }

    def producer_config(self) -> dict[str, Any]:
        """The Celery settings of a process that only *sends* task messages from the outbox (the API's
        relay, the sweep's backstop relay): fail-fast connects and no result backend. A producer with a
        result backend subscribes to each task's result channel on send, which on a dead Redis blocks
        for ~19 s and then leaves the app broken for good; a sweep stuck there would also hold its
        outbox rows locked (`FOR UPDATE`), so no other relay could send them when the broker returns."""
        config = self.celery_config()
        transport = dict(config.get("broker_transport_options") or {})
        if not self.broker_url.startswith("sqla+"):
            transport |= {
                "socket_connect_timeout": PRODUCER_CONNECT_TIMEOUT,
                "socket_timeout": PRODUCER_SEND_TIMEOUT,
            }
        return config | {
            "result_backend": None,
            "broker_transport_options": transport,
            "broker_connection_timeout": PRODUCER_CONNECT_TIMEOUT,
            "broker_connection_retry": False,
            "broker_connection_max_retries": 0,
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build `Settings(...)` directly instead)."""
    return Settings()
