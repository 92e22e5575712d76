"""Task registration: class-based tasks (one per module) registered on the app by name."""

from __future__ import annotations

from celery import Celery


def register(app: Celery) -> None:
    from worker.tasks.audit import RunAudit
    from worker.tasks.shard import MergeShards, RunShard
    from worker.tasks.sweep import SweepStaleJobs

    app.register_task(RunAudit())
    app.register_task(RunShard())
    app.register_task(MergeShards())
    app.register_task(SweepStaleJobs())
