"""The audit-job state machine, in one package: every transition is one compare-and-set UPDATE.

A job:   `queued -> running -> succeeded | failed | cancelled | timed_out`
         (`running -> queued` for a transient failure, or when the sweep finds its worker gone).
A running job has a phase: None (the battery runs in one task), `shards` (waiting for its shards:
`occulta.jobs.shards`, `queued -> running -> done | failed | cancelled` per image range) or
`merge` (one task merges the partials and runs the rest of the battery).
Messages to the broker go through the outbox (`occulta.jobs.outbox`) in the transaction that creates
the work, so a broker outage delays a job and never loses it. `occulta.jobs.sweep` recovers work
whose worker died. `occulta.jobs.fairness` decides when a queued job's message is sent (tenants in
turn); `occulta.jobs.watch` serves long-polls on job status. Task names are in `occulta.jobs.task_names`.
"""

from occulta.jobs.job import (
    Claim,
    cancel_requested,
    claim,
    claim_merge,
    finish,
    heartbeat,
    request_cancel,
    requeue,
    start_sharded,
    unclaim_merge,
)
from occulta.jobs.sweep import SweepResult, sweep

__all__ = [
    "Claim",
    "SweepResult",
    "cancel_requested",
    "claim",
    "claim_merge",
    "finish",
    "heartbeat",
    "request_cancel",
    "requeue",
    "start_sharded",
    "sweep",
    "unclaim_merge",
]
