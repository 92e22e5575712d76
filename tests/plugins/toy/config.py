"""The toy audit's settings: pure data, so the API validates them without importing torch."""

from __future__ import annotations

from pydantic import Field

from auditors.audits.info import AuditConfig


class ToyConfig(AuditConfig):
    n_images: int = Field(default=64, ge=1)
    max_share: float = Field(default=0.5, gt=0, le=1)
