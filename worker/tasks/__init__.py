"""The Celery tasks, one per module; each imports the pipeline (`worker.pipeline`) or the fan-out
(`worker.fanout`) and never another task module (an import-linter contract)."""

from __future__ import annotations

from celery import Celery


def register(app: Celery) -> None:
    from worker.tasks.audit import RunAudit
    from worker.tasks.merge import MergeShards
    from worker.tasks.shard import RunShard
    from worker.tasks.sweep import SweepStaleJobs

    app.register_task(RunAudit())
    app.register_task(RunShard())
    app.register_task(MergeShards())
    app.register_task(SweepStaleJobs())
