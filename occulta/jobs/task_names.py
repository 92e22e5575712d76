"""Celery task names: the one definition the producer (`api.queue`, the outbox relay) and the worker
share, so `api` can enqueue by name without importing `worker`."""

from __future__ import annotations

RUN_AUDIT = "occulta.audit.run"
RUN_SHARD = "occulta.audit.shard"
MERGE_SHARDS = "occulta.audit.merge"
SWEEP = "occulta.jobs.sweep"
