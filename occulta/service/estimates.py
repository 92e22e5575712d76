"""The `estimate` of a battery's cost: torch-free, from the validated battery and one small stored file.

Forward passes come from the model card, the dataset size and the validated configs; seconds from
the calibration a worker stored beside the model's weights on its last run of that model (the API
process never runs a model). Without one, `seconds` is null and `basis` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from auditors.regions import Region
from occulta.estimate import api_estimate, calibration_key, shape_of_card
from occulta.service.battery import Accepted, accept
from occulta.storage import ObjectStore

log = logging.getLogger(__name__)


def estimate_of(store: ObjectStore | None, battery: Accepted, samples: int | None) -> dict[str, Any]:
    """Passes per audit from the battery, seconds when a worker calibrated the model (`store` None:
    passes only)."""
    key = calibration_key(battery.model_key)
    calibration = None
    if store is not None:
        try:
            calibration = store.read_bytes(key) if store.exists(key) else None
        except Exception:  # the job is already queued: a store hiccup only costs the seconds
            log.warning("cannot read %s; estimating passes only", key, exc_info=True)
    shape = shape_of_card(
        battery.card,
        battery.n_images,
        num_classes=battery.num_classes,
        samples=samples,
        n_regions=len(battery.regions or []),
    )
    return api_estimate(battery.configs, shape, calibration)


def audit_estimate(
    session: Session,
    store: ObjectStore,
    *,
    tenant_id: str,
    model_id: str,
    dataset_id: str,
    audits: list[str],
    configs: dict[str, dict[str, Any]] | None,
    samples: int | None,
    regions: Sequence[Region] | None,
) -> dict[str, Any]:
    """The estimate alone, nothing queued (the launch form's Estimate button)."""
    plain = [r.model_dump(mode="json", exclude_none=True) for r in regions or []] or None
    battery = accept(
        session,
        tenant_id=tenant_id,
        model_id=model_id,
        dataset_id=dataset_id,
        audits=audits,
        configs=configs,
        regions=plain,
    )
    return estimate_of(store, battery, samples)
