"""One audit over many workers: plan range shards of every shardable audit of a job, send them
as a Celery chord whose callback merges, compute one shard, and merge an audit's partials.

Generic over audits: an audit takes part when its metadata says it is shardable (`AuditInfo.shardable`;
its class, on `auditors.audits.base.Audit`, then plans ranges, runs one range to a JSON partial and
merges partials into the result a single run gives); the battery's other audits run in the merge task
as usual. Shard rows (`occulta.jobs.shards`) hold the
state and the partials, so messages carry only ids and names.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery, chord, group
from sqlalchemy.orm import Session

from occulta import jobs
from occulta.errors import DatasetError
from occulta.jobs import shards
from occulta.jobs.task_names import MERGE_SHARDS, RUN_SHARD
from occulta.service.audits import saved_results
from worker.base import resources
from worker.heartbeat import Heartbeat
from worker.models import cached_loader
from worker.pipeline import JobInputs, Staged

if TYPE_CHECKING:
    from auditors.audits.base import Audit

log = logging.getLogger("occulta.worker")


def shardable(name: str) -> Audit[Any, Any] | None:
    """The named audit if it can be sharded, else None (the one place that asks)."""
    from auditors.registry import audit_info, get_auditor

    return get_auditor(name) if audit_info(name).shardable else None


def _config(name: str, inputs: JobInputs) -> Any:
    from auditors.registry import parse_config

    return parse_config(name, inputs.configs[name])


def fan_out(app: Celery, session: Session, *, job_id: str, inputs: JobInputs) -> bool:
    """Plan shards and send the chord when the dataset is larger than `shard_size` and the battery has
    shardable audits not yet done; False means: run the battery in this task as usual. The chord is
    sent before the job is marked as waiting, so a failed send leaves the job re-queueable."""
    settings = resources().settings
    if settings.shard_size <= 0 or inputs.n_images <= settings.shard_size:
        return False
    done = saved_results(session, job_id)
    session.commit()
    candidates = ((name, shardable(name)) for name in inputs.spec["audits"] if name not in done)
    auditors = {name: auditor for name, auditor in candidates if auditor is not None}
    if not auditors:
        return False
    n_shards = math.ceil(inputs.n_images / settings.shard_size)
    for name, auditor in auditors.items():
        ranges = auditor.plan_shards(inputs.n_images, _config(name, inputs), n_shards)
        shards.plan(session, job_id=job_id, tenant_id=inputs.tenant_id, audit=name, ranges=ranges)
    pending = shards.to_run(session, job_id)
    merge = app.signature(MERGE_SHARDS, args=[job_id], queue=settings.queue, immutable=True)
    if not pending:
        merge.apply_async()
    else:
        header = group(
            app.signature(RUN_SHARD, args=[job_id, a, i], queue=settings.queue) for a, i in pending
        )
        chord(header)(merge)
    fraction, message = shards.progress(session, job_id)
    jobs.start_sharded(session, job_id, progress=fraction, message=f"waiting for shards; {message}")
    log.info("audit %s: %d shards sent for %s", job_id, len(pending), ", ".join(auditors))
    return True


def compute_shard(
    card: Path, data_ref: str, inputs: JobInputs, audit: str, indices: range, beat: Heartbeat
) -> dict[str, Any]:
    """Load this shard's images exactly as a single run would and compute its JSON partial (torch,
    worker child only; the model comes from the process's cache)."""
    from occulta.runner import prepare_run

    t0 = time.perf_counter()
    auditor = shardable(audit)
    if auditor is None:
        raise DatasetError(f"audit {audit} was sharded but is not shardable on this worker")
    with tempfile.TemporaryDirectory(prefix="occulta-shard-") as tmp:
        prepared = prepare_run(
            card_path=card,
            data_ref=data_ref,
            out_dir=Path(tmp),
            device=resources().settings.device,
            samples=inputs.spec["samples"],
            seed=inputs.spec["seed"],
            regions=inputs.spec["regions"],
            cancelled=beat.cancelled,
            # Decode only this shard's images, unless the audit picks its images from all of them.
            indices=indices if auditor.shard_inputs == "range" else None,
            model_loader=cached_loader(inputs.model_key),
        )
        ctx = prepared.ctx
        if prepared.n_sampled != inputs.n_images:
            raise DatasetError(
                f"the dataset has {prepared.n_sampled} images, the shards were planned for {inputs.n_images}"
            )
        ctx.progress = beat.progress
        t1 = time.perf_counter()
        partial: dict[str, Any] = auditor.run_shard(ctx, _config(audit, inputs), indices)
    # Where a shard's time goes (bench/scaling.py reads it): loading the model and images vs the audit.
    partial["timing"] = {"prepare_s": round(t1 - t0, 3), "compute_s": round(time.perf_counter() - t1, 3)}
    return partial


def merge_partials(job_id: str, inputs: JobInputs, staged: Staged) -> dict[str, Any]:
    """Merge every sharded audit not yet saved into its result and save it; the merge task then runs
    the battery with these as already done (so the unsharded audits run, and the report is written)."""
    from auditors.audits.base import ShardMeta
    from occulta.cards import load_card

    meta = ShardMeta(load_card(staged.card).class_names, staged.out_dir, inputs.spec["seed"], inputs.n_images)
    merged = {}
    with resources().sessions() as session:
        done = saved_results(session, job_id)
        for name in shards.audits_sharded(session, job_id):
            auditor = shardable(name)
            if name in done or auditor is None:
                continue
            result = auditor.merge(meta, _config(name, inputs), shards.partials(session, job_id, name))
            staged.saver.on_audit_done(result)
            merged[name] = result
    return merged
