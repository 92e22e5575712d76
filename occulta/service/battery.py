"""A battery checked once, against the caller's rows, for submitting and for estimating alike: the
model and dataset exist and belong to the tenant, every audit name is known and its config valid
(torch-free: `AuditInfo.config`), and every region fits the model's input. A mistake is a 422 now,
not a failed job later; what the estimate needs from the rows is kept, so nothing is read twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from occulta.db import DatasetRecord, ModelRecord
from occulta.errors import AuditConfigError
from occulta.service.scope import get_owned

if TYPE_CHECKING:
    from auditors.audits.info import AuditConfig


@dataclass(frozen=True)
class Accepted:
    """A validated battery and what its estimate reads from the rows (plain values, not ORM rows, so
    they survive a rollback)."""

    configs: dict[str, AuditConfig]
    regions: list[dict[str, Any]] | None
    card: dict[str, Any]
    model_key: str  # where the model's weights (and its calibration) are stored
    num_classes: int
    n_images: int

    @property
    def configs_json(self) -> dict[str, dict[str, Any]]:
        """The configs with defaults filled in, as JSON: the worker runs exactly what was accepted."""
        return {name: config.model_dump(mode="json") for name, config in self.configs.items()}


def accept(
    session: Session,
    *,
    tenant_id: str,
    model_id: str,
    dataset_id: str,
    audits: list[str],
    configs: dict[str, dict[str, Any]] | None,
    regions: list[dict[str, Any]] | None,
) -> Accepted:
    from occulta.runner import parse_regions, validate_battery

    model = get_owned(session, ModelRecord, model_id, tenant_id=tenant_id, what="model")
    dataset = get_owned(session, DatasetRecord, dataset_id, tenant_id=tenant_id, what="dataset")
    if len(set(audits)) != len(audits):
        raise AuditConfigError("`audits` lists the same audit twice")
    try:
        parsed = validate_battery(audits, configs)
    except ModuleNotFoundError as exc:
        raise AuditConfigError(f"an audit of {audits} is not installed on this server ({exc.name})") from None
    size = model.card.get("input_size") or []
    parse_regions(regions, (int(size[1]), int(size[2])) if len(size) == 3 else None)
    return Accepted(
        configs=parsed,
        regions=regions,
        card=dict(model.card),
        model_key=model.storage_key,
        num_classes=model.num_classes,
        n_images=dataset.n_images,
    )
