"""Loaded into test workers with `celery worker --include tests.service.shard_faults`: makes the shard
starting at image `SHARD_FAIL_ONCE_AT` raise once (a marker file in `SHARD_FAULT_DIR` remembers it
across worker processes), so a test can watch that one shard retried alone. Imports no torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import worker.fanout as fanout

_real_compute = fanout.compute_shard


def _compute_failing_once(
    card: Path, data_ref: str, inputs: Any, audit: str, indices: range, beat: Any, **kw: Any
) -> Any:
    folder, at = os.environ.get("SHARD_FAULT_DIR"), os.environ.get("SHARD_FAIL_ONCE_AT")
    if folder and at is not None and indices.start == int(at):
        marker = Path(folder) / f"failed-at-{indices.start}"
        try:
            marker.open("x").close()  # atomic: only the first attempt anywhere fails
        except FileExistsError:
            pass
        else:
            raise RuntimeError(f"injected fault in the shard starting at image {indices.start}")
    return _real_compute(card, data_ref, inputs, audit, indices, beat, **kw)


fanout.compute_shard = _compute_failing_once
