"""How much sooner does one audit finish with more workers? One audit, sharded over 1, 2 and 4 Celery
worker processes (each `--concurrency 1`, `OMP_NUM_THREADS=1`, CPU), against the same audit unsharded.

    python -m bench.scaling --audit lime_consistency [--workers 1 2 4]
    python -m bench.scaling --audit all

Needs PostgreSQL (127.0.0.1:5432, user postgres, trust) and Redis (127.0.0.1:6379) on loopback; objects
go to a temp folder. It creates and drops its own database, uses a private queue, starts its own
workers and stops them. The model is occulta_resnet_tiny trained for six epochs on the planted task
(seeded). Baseline: one worker, sharding off (OCCULTA_SHARD_SIZE=0). Wall time runs from
sending `occulta.audit.run` to the job row saying `succeeded`, with the workers already up. Each shard
records where its time went (staging, loading the model and images, the audit's own work), and the
merge's share is the job's end minus the last shard's. Prints a table and writes
bench/results/scaling_<audit>.json; `python -m bench.simulate` turns those into N = 1..64 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
# Per audit: its config, the dataset size and the shard size (4 shards), each ~30-60 s on one core.
WORKLOADS: dict[str, tuple[dict[str, Any], int, int]] = {
    "missingness_bias": ({"strategies": ["black", "grey"]}, 5000, 1250),  # 10 fractions
    "lime_consistency": ({"n_images": 16, "n_samples": 500}, 64, 16),  # 16 picked images: 4 per shard
    "sis": ({"n_images": 256, "method": "gradient", "gradient_k": 16, "tau": 0.9}, 512, 128),
    "spurious_signal": ({"n_images": 256}, 256, 64),
}


def _env(base: dict[str, str], shard_size: int) -> dict[str, str]:
    return base | {"OCCULTA_SHARD_SIZE": str(shard_size)}


TRAIN_REF = "synthetic:shapes?classes=4&size=32&n=2000&artifact=square&artifact_class=0&fraction=1&seed=1"


def _make_model(folder: Path) -> dict[str, Any]:
    import timm
    import torch
    from safetensors.torch import save_file

    import auditors.zoo.architectures  # noqa: F401
    from auditors.zoo.synthetic import generate, parse_synthetic
    from auditors.zoo.training import train_classifier

    # Trained for a few seconds on the planted task (circles carry a corner square): speed does not
    # depend on the weights, but what an audit does does (SIS explains only confident images, the
    # spurious audit tests the candidates it finds).
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = timm.create_model("occulta_resnet_tiny", num_classes=4)
    train = generate(parse_synthetic(TRAIN_REF))
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train_classifier(model, train.images, train.labels, mean=mean, std=std, epochs=6, lr=3e-3, seed=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "tiny.safetensors"))
    card = {
        "name": "tiny-bench",
        "arch": "occulta_resnet_tiny",
        "arch_kwargs": {"num_classes": 4},
        "weights": "tiny.safetensors",
        "input_size": [3, 32, 32],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "class_names": ["circle", "square", "triangle", "cross"],
    }
    (folder / "card.json").write_text(json.dumps(card))
    return card


def _seed_rows(env: dict[str, str], folder: Path, n_images: int) -> tuple[str, str, str]:
    """A tenant, the model in the object store, a synthetic dataset: (tenant, model_id, dataset_id)."""
    from occulta.db import DatasetRecord, ModelRecord, make_engine, make_session_factory, new_id
    from occulta.db.migrate import upgrade
    from occulta.service.keys import create_tenant_key
    from occulta.settings import Settings
    from occulta.storage import get_store

    settings = Settings(**{k.removeprefix("OCCULTA_").lower(): v for k, v in env.items()})
    settings.ensure_dirs()
    upgrade(settings.database_url)
    card = _make_model(folder)
    store = get_store(settings)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as s:
        tenant = create_tenant_key(s, tenant=f"bench-{secrets.token_hex(3)}").tenant_id
        model_id, dataset_id = new_id("mdl"), new_id("ds")
        prefix = f"tenants/{tenant}/models/{model_id}/"
        for name in ("card.json", "tiny.safetensors"):
            store.put_file(prefix + name, folder / name, content_type="application/octet-stream")
        s.add(
            ModelRecord(
                id=model_id,
                tenant_id=tenant,
                name="tiny",
                arch=card["arch"],
                format="safetensors",
                sha256="0" * 64,
                size_bytes=1,
                storage_key=prefix,
                num_classes=4,
                class_names=card["class_names"],
                card=card,
            )
        )
        s.add(
            DatasetRecord(
                id=dataset_id,
                tenant_id=tenant,
                kind="synthetic",
                ref=f"synthetic:shapes?classes=4&size=32&n={n_images}&artifact=square&artifact_class=0&fraction=1&seed=3",
                storage_key=None,
                n_images=n_images,
                class_names=card["class_names"],
            )
        )
        s.commit()
    engine.dispose()
    return tenant, model_id, dataset_id


def _start_workers(env: dict[str, str], n: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        log = (logs / f"worker{i}-{time.monotonic_ns()}.log").open("wb")
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--concurrency",
            "1",
            "--loglevel=INFO",
            "-n",
            f"bench{i}-{secrets.token_hex(3)}@%h",
            "-Q",
            env["OCCULTA_QUEUE"],
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        procs[-1].log_path = Path(log.name)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while not all(b" ready." in p.log_path.read_bytes() for p in procs):  # type: ignore[attr-defined]
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            _stop(procs)
            raise RuntimeError("workers did not start; see " + str(logs))
        time.sleep(0.2)
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def _run_once(
    env: dict[str, str],
    tenant: str,
    model_id: str,
    dataset_id: str,
    workers: int,
    logs: Path,
    audit: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    from celery import Celery
    from sqlalchemy import select

    from occulta.db import AuditJob, AuditShardRecord, make_engine, make_session_factory, new_id

    engine = make_engine(env["OCCULTA_DATABASE_URL"])
    sessions = make_session_factory(engine)
    job_id = new_id("aud")
    with sessions() as s:
        s.add(
            AuditJob(
                id=job_id,
                tenant_id=tenant,
                model_id=model_id,
                dataset_id=dataset_id,
                audits=[audit],
                configs={audit: config},
                seed=0,
                request_hash="bench",
            )
        )
        s.commit()
    procs = _start_workers(env, workers, logs)
    try:
        app = Celery("bench", broker=env["OCCULTA_BROKER_URL"])
        t0 = time.perf_counter()
        app.send_task("occulta.audit.run", args=[job_id], queue=env["OCCULTA_QUEUE"])
        while True:
            with sessions() as s:
                row = s.get(AuditJob, job_id)
                assert row is not None
                status = row.status
            if status not in ("queued", "running"):
                break
            if time.perf_counter() - t0 > 900:
                raise RuntimeError("audit took longer than 15 minutes")
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    finally:
        _stop(procs)
    with sessions() as s:
        shards = s.scalars(
            select(AuditShardRecord)
            .where(AuditShardRecord.job_id == job_id)
            .order_by(AuditShardRecord.shard_index)
        ).all()
        timings = [dict((r.partial or {}).get("timing") or {}) for r in shards]
        last_shard = max((r.finished_at for r in shards if r.finished_at is not None), default=None)
        job = s.get(AuditJob, job_id)
        assert job is not None
        verdict, finished = job.verdict, job.finished_at
    engine.dispose()
    if status != "succeeded":
        raise RuntimeError(f"audit {job_id} ended {status}; see {logs}")
    merge_s = (finished - last_shard).total_seconds() if last_shard is not None and finished else None
    return {
        "wall_s": round(wall, 2),
        "shards": len(shards),
        "workers_used": len({r.worker for r in shards}) if shards else 1,
        "shard_items": [r.stop - r.start for r in shards],
        "shard_stage_s": [t.get("stage_s") for t in timings],
        "shard_prepare_s": [t.get("prepare_s") for t in timings],
        "shard_compute_s": [t.get("compute_s") for t in timings],
        "merge_s": None if merge_s is None else round(merge_s, 2),
        "verdict": verdict,
    }


def _bench_audit(audit: str, workers: list[int]) -> dict[str, Any]:
    import psycopg

    config, n_images, shard_size = WORKLOADS[audit]
    db = f"occulta_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    tmp = Path(tempfile.mkdtemp(prefix="occulta-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCCULTA_")} | {
        "OCCULTA_ENV": "development",
        "OCCULTA_DATA_DIR": str(tmp / "data"),
        "OCCULTA_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
        "OCCULTA_BROKER_URL": REDIS,
        "OCCULTA_QUEUE": f"occulta-bench-{secrets.token_hex(4)}",
        "OCCULTA_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    rows: list[dict[str, Any]] = []
    try:
        tenant, model_id, dataset_id = _seed_rows(base, tmp, n_images)
        runs = [("unsharded", 1, 0)] + [("sharded", w, shard_size) for w in workers]
        for mode, n_workers, size in runs:
            env = _env(base, size)
            out = _run_once(env, tenant, model_id, dataset_id, n_workers, logs, audit, config)
            rows.append({"mode": mode, "workers": n_workers, "shard_size": size, **out})
            print(f"{audit} {mode:>9} workers={n_workers} wall={out['wall_s']:.1f}s", flush=True)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        import redis

        redis.Redis.from_url(REDIS).delete(base["OCCULTA_QUEUE"])
    baseline = rows[0]["wall_s"]
    one = next((r["wall_s"] for r in rows if r["mode"] == "sharded" and r["workers"] == 1), baseline)
    for r in rows:
        r["speedup_vs_unsharded"] = round(baseline / r["wall_s"], 2)
        r["speedup_vs_1_worker_sharded"] = round(one / r["wall_s"], 2)
    print(f"\n{audit}: {n_images} images, {json.dumps(config)}")
    print(
        "| mode | workers | shards | wall (s) | vs unsharded | vs 1 worker sharded | compute per shard (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        compute = ", ".join(f"{c:.1f}" for c in r["shard_compute_s"] if c is not None) or "–"
        print(
            f"| {r['mode']} | {r['workers']} | {r['shards']} | {r['wall_s']:.1f} | "
            f"{r['speedup_vs_unsharded']:.2f}x | {r['speedup_vs_1_worker_sharded']:.2f}x | {compute} |"
        )
    return {
        "audit": audit,
        "images": n_images,
        "config": {audit: config},
        "cpu_count": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "machine": platform.platform(),
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    for audit in WORKLOADS if args.audit == "all" else [args.audit]:
        out = _bench_audit(audit, args.workers)
        path = ROOT / "bench" / "results" / f"scaling_{audit}.json"
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}\n", flush=True)


if __name__ == "__main__":
    main()
