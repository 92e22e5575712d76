"""Hundreds of clients at once against a real uvicorn on PostgreSQL: no 5xx, no client time-out, and
every accepted audit exists exactly once, including when one Idempotency-Key is sent twice at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from bench.load import Call, accepted_ids, count_jobs, fire
from occulta.db import DatasetRecord, ModelRecord, make_engine, make_session_factory, new_id
from occulta.service.keys import find_active_key
from tests.fixtures.service import prod_env, run_stack

pytestmark = pytest.mark.service

CLASSES = ["circle", "square", "triangle", "cross"]


def _rows(db_url: str, key: str) -> tuple[str, str]:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        row = find_active_key(s, key)
        assert row is not None
        tenant = row.tenant_id
        model = ModelRecord(
            id=new_id("mdl"),
            tenant_id=tenant,
            name="m",
            arch="occulta_resnet_tiny",
            format="safetensors",
            sha256="0" * 64,
            size_bytes=1,
            storage_key=f"tenants/{tenant}/models/m/",
            num_classes=4,
            class_names=CLASSES,
            card={"arch": "occulta_resnet_tiny"},
        )
        data = DatasetRecord(
            id=new_id("ds"),
            tenant_id=tenant,
            kind="synthetic",
            ref="synthetic:shapes?n=64",
            n_images=64,
            class_names=CLASSES,
        )
        s.add_all([model, data])
        s.commit()
        ids = (model.id, data.id)
    engine.dispose()
    return ids


def test_hundreds_of_concurrent_clients_get_no_5xx_and_each_accepted_audit_exists_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, pg_migrated, redis_url, s3_endpoint
) -> None:
    env = prod_env(
        pg_url=pg_migrated, redis_url=redis_url, s3_endpoint=s3_endpoint, data_dir=tmp_path / "data"
    )
    # A small server (8 requests inside at once) so a few hundred clients are far past its capacity.
    env |= {"OCCULTA_API_THREADS": "8"}
    with run_stack(env, worker=False, log_dir=tmp_path / "logs") as stack:
        model_id, dataset_id = _rows(env["OCCULTA_DATABASE_URL"], stack.key)
        body = {"model_id": model_id, "dataset_id": dataset_id, "audits": ["missingness_bias"], "config": {}}
        unique = [
            Call("POST", "/v1/audits", body | {"seed": i}, {"Idempotency-Key": f"u-{i}"}) for i in range(150)
        ]
        # The same key and body twice, at the same moment: one audit, both answers name it.
        twice = [
            Call("POST", "/v1/audits", body | {"seed": 1000 + i}, {"Idempotency-Key": f"d-{i}"})
            for i in range(50)
        ]
        calls = (
            [Call("GET", "/v1/models")] * 150
            + [Call("GET", "/v1/audits?limit=5")] * 50
            + unique
            + twice
            + twice
        )
        outcomes = asyncio.run(fire(stack.url, stack.headers, calls, timeout=300))

        statuses = Counter(o.status for o in outcomes)
        assert all(0 < s < 500 for s in statuses), statuses
        assert statuses[200] + statuses[202] == len(calls), statuses
        posts = outcomes[200:]
        ids = accepted_ids(posts)
        assert len(ids) == len(unique) + 2 * len(twice)
        by_key: dict[str, set[str]] = {}
        for call, outcome in zip(unique + twice + twice, posts, strict=True):
            by_key.setdefault(call.headers["Idempotency-Key"], set()).add(outcome.body["id"])  # type: ignore[index, call-overload]
        assert all(len(v) == 1 for v in by_key.values())
        distinct = sorted({i for v in by_key.values() for i in v})
        assert len(distinct) == len(unique) + len(twice)
        rows = count_jobs(env["OCCULTA_DATABASE_URL"], distinct)
        assert all(rows[i] == 1 for i in distinct), rows
    import redis

    redis.Redis.from_url(redis_url).delete(env["OCCULTA_QUEUE"])  # leave no test messages behind
    log = (tmp_path / "logs" / "api.log").read_text()
    assert "Exception in ASGI application" not in log and "Traceback" not in log
