"""The `estimate` returned when an audit is queued: torch-free, from rows and one small stored file.

Forward passes come from the model card, the dataset size and the validated configs; seconds from
the calibration a worker stored beside the model's weights on its last run of that model (the API
process never runs a model). Without one, `seconds` is null and `basis` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from occulta.db import DatasetRecord, ModelRecord
from occulta.estimate import api_estimate, calibration_key, shape_of_card
from occulta.service.scope import get_owned
from occulta.storage import ObjectStore

log = logging.getLogger(__name__)


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
    regions: Sequence[object] | None,
) -> dict[str, Any]:
    from occulta.runner import validate_battery

    model = get_owned(session, ModelRecord, model_id, tenant_id=tenant_id, what="model")
    dataset = get_owned(session, DatasetRecord, dataset_id, tenant_id=tenant_id, what="dataset")
    key = calibration_key(model.storage_key)
    try:
        calibration = store.read_bytes(key) if store.exists(key) else None
    except Exception:  # the job is already queued: a store hiccup only costs the seconds
        log.warning("cannot read %s; estimating passes only", key, exc_info=True)
        calibration = None
    shape = shape_of_card(
        model.card,
        dataset.n_images,
        num_classes=model.num_classes,
        samples=samples,
        n_regions=len(regions or []),
    )
    return api_estimate(validate_battery(audits, configs), shape, calibration)
