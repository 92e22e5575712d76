"""The Celery application: `celery -A worker.app worker` (or `occulta worker`).

Settings come from `occulta.settings` (JSON only, acks_late, prefetch 1, visibility timeout above the
hard limit). The parent process never imports torch: a prefork parent that has initialised CUDA or
torch's thread pools deadlocks its forked children, so torch is imported inside the task, in the
child. A child runs up to `worker_max_tasks_per_child` tasks and keeps the last `model_cache_size`
models loaded (`worker.models`), so the shards of one job pay for torch and the weights once; being
replaced returns all its memory.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from occulta.jobs.task_names import SWEEP
from occulta.settings import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    app = Celery("occulta")
    app.config_from_object(settings.celery_config())
    app.conf.beat_schedule = {
        "sweep-stale-audits": {
            "task": SWEEP,
            "schedule": float(settings.sweep_interval_seconds),
            "options": {"queue": settings.queue, "expires": float(settings.sweep_interval_seconds)},
        }
    }
    from worker.tasks import register

    register(app)
    return app


@worker_process_init.connect
def _pin_gpu(**_: Any) -> None:
    """One child per GPU: with CUDA_VISIBLE_DEVICES=0,1,2,3 and concurrency 4, child i sees only GPU i.
    Done before the task imports torch, so CUDA initialises on the right device."""
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(visible) > 1:
        from billiard.process import current_process

        index = getattr(current_process(), "index", 0) or 0
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[index % len(visible)]


app = create_celery(get_settings())
