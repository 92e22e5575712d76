"""Request and response bodies of the public API, with OpenAPI examples. Built from ORM rows here so
no ORM object ever leaves the API process."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.errors import scrub
from auditors.regions import Region
from occulta.db import ApiKey, AuditJob, AuditResultRecord, DatasetRecord, ModelRecord

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]

# Bounds that keep every accepted request storable and affordable: integers fit their INTEGER
# columns, and an audit config cannot ask for a billion perturbations.
INT32_MAX = 2**31 - 1
ID_MAX = 40  # the id columns are String(40)
MAX_AUDIT_IMAGES = 100_000
MAX_POLICY_CHARS = 64 * 1024
CONFIG_INT_MAX = {
    "n_samples": 10_000,
    "n_images": 10_000,
    "n_random_orders": 256,
    "n_show": 64,
    "max_k": 10_000,
    "steps": 1_024,
    "retrain_images": 50_000,
    "retrain_epochs": 200,
    "gradient_k": 1_000_000,
    "exact_max_pixels": 1_000_000,
    "patch_size": 1_024,
    "k_removal": 10_000,
    "k_consistency": 10_000,
}
CONFIG_LIST_MAX = 1_000
CONFIG_STR_MAX = 1_000


def check_config_budget(config: dict[str, dict[str, Any]]) -> None:
    """Every number in an audit config fits its budget (the audit's own config checks the rest)."""
    for audit, values in config.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            where = f"config.{audit}.{key}"
            items = value if isinstance(value, list) else [value]
            if len(items) > CONFIG_LIST_MAX:
                raise ValueError(f"{where} has more than {CONFIG_LIST_MAX} items")
            for item in items:
                if isinstance(item, str) and len(item) > CONFIG_STR_MAX:
                    raise ValueError(f"{where} is longer than {CONFIG_STR_MAX} characters")
                if isinstance(item, bool) or not isinstance(item, int | float):
                    continue
                limit = CONFIG_INT_MAX.get(key, INT32_MAX)
                if abs(item) > limit:
                    raise ValueError(f"{where} = {item:g} is past this server's budget of {limit}")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_weights"])
    message: str = Field(examples=["weights do not fit occulta_resnet_tiny: missing key fc.weight"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class ModelOut(BaseModel):
    id: str = Field(examples=["mdl_3f2a9c0e1b7d4c5a6e8f"])
    name: str = Field(examples=["shapes-resnet"])
    arch: str = Field(examples=["occulta_resnet_tiny"])
    format: str = Field(examples=["safetensors"])
    sha256: str
    size_bytes: int
    num_classes: int
    class_names: list[str] = Field(examples=[["circle", "square", "triangle", "cross"]])
    created_at: datetime

    @classmethod
    def of(cls, row: ModelRecord) -> ModelOut:
        return cls(
            id=row.id,
            name=row.name,
            arch=row.arch,
            format=row.format,
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            num_classes=row.num_classes,
            class_names=row.class_names,
            created_at=row.created_at,
        )


class DatasetIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"ref": "synthetic:shapes?classes=4&size=32&n=256&artifact=square&seed=1"},
                {"ref": "s3://occulta/tenants/tnt_0123/data/validation/"},
            ]
        },
    )
    ref: str = Field(
        max_length=2000,
        description="`synthetic:...` or `s3://<bucket>/<prefix inside your tenant's space>`",
    )


class DatasetOut(BaseModel):
    id: str = Field(examples=["ds_9a8b7c6d5e4f3a2b1c0d"])
    kind: Literal["synthetic", "archive", "s3"]
    ref: str
    n_images: int
    class_names: list[str]
    created_at: datetime

    @classmethod
    def of(cls, row: DatasetRecord) -> DatasetOut:
        return cls(
            id=row.id,
            kind=row.kind,
            ref=row.ref,
            n_images=row.n_images,
            class_names=row.class_names,
            created_at=row.created_at,
        )


class AuditIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_id": "mdl_3f2a9c0e1b7d4c5a6e8f",
                    "dataset_id": "ds_9a8b7c6d5e4f3a2b1c0d",
                    "audits": ["missingness_bias"],
                    "config": {"missingness_bias": {}},
                    "samples": 64,
                    "seed": 0,
                }
            ]
        },
    )
    model_id: str = Field(max_length=ID_MAX)
    dataset_id: str = Field(max_length=ID_MAX)
    audits: list[str] = Field(min_length=1, max_length=16, examples=[["missingness_bias", "spurious_signal"]])
    config: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=16)
    samples: int | None = Field(
        default=None, ge=1, le=MAX_AUDIT_IMAGES, description="images to sample; null: the whole dataset"
    )
    seed: int = Field(default=0, ge=0, le=INT32_MAX)
    regions: list[Region] | None = Field(
        default=None, description="suspected regions to test; each must fit the model's input"
    )

    @field_validator("config")
    @classmethod
    def _config_budget(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        check_config_budget(v)
        return v


class AuditResultSummary(BaseModel):
    name: str
    verdict: str
    summary: str

    @classmethod
    def of(cls, row: AuditResultRecord) -> AuditResultSummary:
        return cls(name=row.name, verdict=row.verdict, summary=str(row.result.get("summary", "")))


class AuditOut(BaseModel):
    id: str = Field(examples=["aud_5e4f3a2b1c0d9a8b7c6d"])
    status: Status
    progress: float = Field(ge=0, le=1)
    message: str
    verdict: str | None
    audits: list[str]
    model_id: str | None
    dataset_id: str | None
    seed: int
    samples: int | None
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results: list[AuditResultSummary] = Field(default_factory=list)
    estimate: dict[str, Any] | None = Field(
        default=None,
        description="On creation: forward passes per audit and, once a worker has calibrated this "
        "model, estimated seconds (`basis` says which)",
    )

    @classmethod
    def of(cls, row: AuditJob, results: Sequence[AuditResultRecord] = ()) -> AuditOut:
        """The job as the API and the dashboard show it, with its saved results in finishing order."""
        return cls(
            id=row.id,
            status=row.status,
            progress=row.progress,
            message=row.message,
            verdict=row.verdict,
            audits=row.audits,
            model_id=row.model_id,
            dataset_id=row.dataset_id,
            seed=row.seed,
            samples=row.samples,
            attempts=row.attempts,
            error=scrub(row.error) if row.error else row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            results=[AuditResultSummary.of(r) for r in results],
        )


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class GateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "audit_id": "aud_5e4f3a2b1c0d9a8b7c6d",
                    "policy": "assertions:\n  missingness_bias.verdict: [error, {in: [pass]}]\n",
                }
            ]
        },
    )
    audit_id: str = Field(max_length=ID_MAX)
    policy: str = Field(max_length=MAX_POLICY_CHARS, description="the policy file's YAML text")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=200, examples=["ci-github"])


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the first characters of the key, to tell keys apart")
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.id, name=row.name, prefix=row.prefix, created_at=row.created_at, revoked_at=row.revoked_at
        )


class NewKeyOut(KeyOut):
    key: str = Field(description="the secret; shown only in this response", examples=["occ_x2Vh..."])


class Health(BaseModel):
    ok: bool
    checks: dict[str, str] = Field(default_factory=dict)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in [
        (400, "malformed request"),
        (401, "missing or unknown API key"),
        (404, "not found (or another tenant's)"),
        (413, "a body over its size limit"),
        (422, "invalid input; the message says what"),
        (503, "database unreachable or the server at capacity; retry after `Retry-After`"),
    ]
}
