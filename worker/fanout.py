"""One audit over many workers: plan range shards of every shardable audit of a job, send them
as a Celery chord whose callback merges, compute one shard, and merge the job.

Generic over audits: an audit takes part when its metadata says it is shardable (`AuditInfo.shardable`;
its class, on `auditors.audits.base.Audit`, then plans ranges, runs one range to a JSON partial and
merges partials into the result a single run gives). Shard rows (`occulta.jobs.shards`) hold the
state and the partials, so messages carry only ids and names.

The shards also record what the report needs besides the audits (`occulta.jobs.facts`: the model,
data and environment descriptions, the clean predictions of the sample, memory events), so when every
audit of the battery was sharded the merge reads those and stages, loads and predicts nothing. When
the battery also holds an audit that cannot be sharded, the merge runs it as an unsharded job would
(that needs the model and the images anyway), with the merged results as done.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from functools import partial as bind
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery, chord, group
from sqlalchemy.orm import Session

from occulta import jobs
from occulta.db import AuditJob, utcnow
from occulta.errors import DatasetError
from occulta.jobs import shards
from occulta.jobs.facts import FACTS_KEY, ShardFacts, facts_range, gather
from occulta.jobs.results import ResultSaver, saved_results
from occulta.jobs.task_names import MERGE_SHARDS, RUN_SHARD
from worker.base import resources
from worker.heartbeat import Heartbeat
from worker.models import cached_loader
from worker.pipeline import JobInputs, Staged, execute, record_calibration, succeed, workspace

if TYPE_CHECKING:
    from auditors.audits.base import Audit, ShardMeta
    from auditors.report import AuditResult, Report
    from occulta.runner import Prepared

# Audit name -> every done shard's partial, in image order, with the facts taken out.
Partials = dict[str, list[dict[str, Any]]]

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
    card: Path,
    data_ref: str,
    inputs: JobInputs,
    audit: str,
    indices: range,
    beat: Heartbeat,
    *,
    carries_facts: bool = False,
) -> dict[str, Any]:
    """Load this shard's images exactly as a single run would and compute its JSON partial (torch,
    worker child only; the model comes from the process's cache), with its facts for the merge
    (`occulta.jobs.facts`; with `carries_facts`, the report skeleton and its share of predictions)."""
    from auditors.engine import batching
    from occulta.runner import prepare_run

    t0 = time.perf_counter()
    batching.drain_events()  # this shard's memory events only
    auditor = shardable(audit)
    if auditor is None:
        raise DatasetError(f"audit {audit} was sharded but is not shardable on this worker")
    config = _config(audit, inputs)
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
        partial: dict[str, Any] = auditor.run_shard(ctx, config, indices)
        t2 = time.perf_counter()
        facts = ShardFacts()
        if carries_facts:
            span = facts_range(
                auditor.shard_inputs, indices, auditor.positions(inputs.n_images, config), inputs.n_images
            )
            facts = _carried_facts(prepared, span, inputs)
    facts.memory = batching.drain_events()
    partial[FACTS_KEY] = facts.model_dump(mode="json")
    # Where a shard's time goes (bench/scaling.py reads it): loading the model and images vs the audit.
    partial["timing"] = {
        "prepare_s": round(t1 - t0, 3),
        "compute_s": round(t2 - t1, 3),
        "facts_s": round(time.perf_counter() - t2, 3),
    }
    return partial


def _carried_facts(prepared: Prepared, span: range, inputs: JobInputs) -> ShardFacts:
    """The report skeleton and the clean predictions of images `span` of the sample; the shard that
    predicts image 0 also measures the model's calibration, which the merge can no longer do."""
    from auditors.calibration import calibrate
    from occulta.runner import clean_predictions

    ctx = prepared.ctx
    local = range(span.start - ctx.image_offset, span.stop - ctx.image_offset)
    predicted, labels = clean_predictions(ctx, local)
    skeleton = prepared.report.model_copy(deep=True)
    skeleton.dataset.n_images = prepared.n_sampled  # a "range" shard's context holds only its images
    if span.start == 0:
        record_calibration(inputs, calibrate(ctx.model, *ctx.image_size))
    return ShardFacts(start=span.start, stop=span.stop, predicted=predicted, labels=labels, skeleton=skeleton)


def merge_job(session: Session, job_id: str, inputs: JobInputs) -> str:
    """Merge a job whose shards are done and finish it. With every audit sharded or saved and the
    shards' facts covering the sample, nothing is staged or loaded: the report is the facts' skeleton
    with the merged results. Otherwise the battery runs as an unsharded job's would, the merged
    results counting as done."""
    sharded = shards.audits_sharded(session, job_id)
    done = saved_results(session, job_id)
    session.commit()
    partials: Partials = {name: shards.partials(session, job_id, name) for name in sharded}
    facts = [
        ShardFacts.model_validate(p.pop(FACTS_KEY))
        for name in sharded
        for p in partials[name]
        if FACTS_KEY in p
    ]
    skeleton = gather(facts, inputs.n_images)
    todo = {name: parts for name, parts in partials.items() if name not in done}  # saved by a retry
    unsharded = [a for a in inputs.spec["audits"] if a not in done and a not in partials]
    if skeleton is None or unsharded:
        before = bind(_merge_staged, todo, inputs)
        return execute(session, job_id, inputs, before=before, progress_floor=shards.SHARD_SHARE)
    job = session.get(AuditJob, job_id)
    started = job.started_at if job is not None else None
    session.commit()
    return _assemble(session, job_id, inputs, todo, done, skeleton, started)


def _merge_staged(partials: Partials, inputs: JobInputs, staged: Staged) -> dict[str, AuditResult]:
    """The merge before a battery that still runs an unsharded audit (the card is staged for it)."""
    from auditors.audits.base import ShardMeta
    from occulta.cards import load_card

    class_names = load_card(staged.card).class_names
    meta = ShardMeta(class_names, staged.out_dir, inputs.spec["seed"], inputs.n_images)
    return merge_partials(partials, meta, inputs, staged.saver)


def merge_partials(
    partials: Partials, meta: ShardMeta, inputs: JobInputs, saver: ResultSaver
) -> dict[str, AuditResult]:
    """Every sharded audit's result from its partials, each saved as it is merged."""
    merged = {}
    for name, parts in partials.items():
        auditor = shardable(name)
        if auditor is None:
            continue
        result = auditor.merge(meta, _config(name, inputs), parts)
        saver.on_audit_done(result)
        merged[name] = result
    return merged


def _assemble(
    session: Session,
    job_id: str,
    inputs: JobInputs,
    partials: Partials,
    done: dict[str, AuditResult],
    skeleton: Report,
    started: datetime | None,
) -> str:
    """The report from the shards alone: `partials` merged, with the results saved before, in battery
    order on the skeleton the shards recorded; the same files and rows as a run that loaded everything.
    Its wall time is the job's, from its start to now (`started`)."""
    from auditors.audits.base import ShardMeta
    from auditors.registry import audit_info
    from occulta.runner import finish_report

    t0 = time.perf_counter()
    audits: Sequence[str] = inputs.spec["audits"]
    with workspace(job_id, inputs, progress_floor=shards.SHARD_SHARE) as ws:
        ws.progress(0.0, "merging the shards")
        ws.out_dir.mkdir(parents=True, exist_ok=True)
        meta = ShardMeta(skeleton.model.class_names, ws.out_dir, inputs.spec["seed"], inputs.n_images)
        results = done | merge_partials(partials, meta, inputs, ws.saver)
        report = skeleton
        for name in audits:
            results[name].role = audit_info(name).role
            report.audits.append(results[name])
        wall = (utcnow() - started).total_seconds() if started is not None else time.perf_counter() - t0
        finish_report(report, ws.out_dir, memory=report.environment.memory, wall_seconds=wall)
        ws.saver.finish()
    names = ", ".join(partials) or "nothing"
    log.info("audit %s: merged %s from the shards' facts (no model or image loaded)", job_id, names)
    return succeed(session, job_id, report.verdict)
