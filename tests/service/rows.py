"""Insert rows directly, for API tests that are about routing, scoping and state rather than uploads."""

from __future__ import annotations

from typing import Any

from occulta.db import AuditJob, DatasetRecord, ModelRecord, new_id


def add_model(sessions, tenant_id: str, arch: str = "occulta_resnet_tiny") -> str:  # type: ignore[no-untyped-def]
    row = ModelRecord(
        id=new_id("mdl"),
        tenant_id=tenant_id,
        name="m",
        arch=arch,
        format="safetensors",
        sha256="0" * 64,
        size_bytes=1,
        storage_key=f"tenants/{tenant_id}/models/x/",
        num_classes=2,
        class_names=["a", "b"],
        card={"arch": arch},
    )
    with sessions() as s:
        s.add(row)
        s.commit()
    return row.id


def add_dataset(sessions, tenant_id: str) -> str:  # type: ignore[no-untyped-def]
    row = DatasetRecord(
        id=new_id("ds"),
        tenant_id=tenant_id,
        kind="synthetic",
        ref="synthetic:shapes",
        n_images=8,
        class_names=["a", "b"],
    )
    with sessions() as s:
        s.add(row)
        s.commit()
    return row.id


def add_job(sessions, tenant_id: str, **values: Any) -> str:  # type: ignore[no-untyped-def]
    model_id = values.pop("model_id", None) or add_model(sessions, tenant_id)
    dataset_id = values.pop("dataset_id", None) or add_dataset(sessions, tenant_id)
    row = AuditJob(
        id=new_id("aud"),
        tenant_id=tenant_id,
        model_id=model_id,
        dataset_id=dataset_id,
        audits=["test_noop"],
        configs={},
        request_hash="x",
        **values,
    )
    with sessions() as s:
        s.add(row)
        s.commit()
    return row.id
