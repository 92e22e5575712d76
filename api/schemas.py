"""Request and response bodies of the public API, with OpenAPI examples. Built from ORM rows here so
no ORM object ever leaves the API process."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from auditors.regions import Region
from occulta.db import ApiKey, AuditJob, DatasetRecord, ModelRecord

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]


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
    ref: str = Field(description="`synthetic:...` or `s3://<bucket>/<prefix inside your tenant's space>`")


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
    model_id: str
    dataset_id: str
    audits: list[str] = Field(min_length=1, examples=[["missingness_bias", "spurious_signal"]])
    config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    samples: int | None = Field(default=None, ge=1, description="images to sample; null: the whole dataset")
    seed: int = 0
    regions: list[Region] | None = Field(
        default=None, description="suspected regions to test; each must fit the model's input"
    )


class AuditResultSummary(BaseModel):
    name: str
    verdict: str
    summary: str


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

    @classmethod
    def of(cls, row: AuditJob, results: list[AuditResultSummary] | None = None) -> AuditOut:
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
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            results=results or [],
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
    audit_id: str
    policy: str = Field(description="the policy file's YAML text")


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
        (422, "invalid input; the message says what"),
    ]
}
