"""Outages with real processes (API server, a Celery worker, beat) on a private Redis that this test
starts, kills and restarts (the machine's shared Redis is never touched): an audit submitted while
the broker is down runs once it is back; a broker restart or a SIGKILLed worker mid-audit still ends
with the report of an undisturbed run. Figures (seconds from the broker's return) are printed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditors.report import Report
from occulta.client import OccultaClient
from tests.fixtures.redis_server import PrivateRedis
from tests.fixtures.service import ROOT, Stack, _child_env, own_database, prod_env, run_stack, start_worker

pytestmark = [pytest.mark.service, pytest.mark.e2e, pytest.mark.timeout(600)]

CONFIG = {"missingness_bias": {"strategies": ["black", "noise", "layer_mask"]}}
SAMPLES = 160


@dataclass
class Outage:
    stack: Stack
    broker: PrivateRedis
    http: httpx.Client
    body: dict[str, Any]
    reference: Report
    logs: Path

    def submit(self) -> str:
        r = self.http.post("/v1/audits", json=self.body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/audits/{job_id}").json())

    def wait(
        self,
        job_id: str,
        *,
        timeout: float,
        until: tuple[str, ...] = ("succeeded", "failed", "cancelled", "timed_out"),
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status["status"] in until:
                return status
            time.sleep(0.1)
        self.dump()
        raise AssertionError(f"{job_id} still {self.status(job_id)} after {timeout}s")

    def wait_running(self, job_id: str, at_least: float) -> None:
        """Until the audit is running and past `at_least` of its progress (mid-audit)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = self.status(job_id)
            assert status["status"] in ("queued", "running"), status
            if status["status"] == "running" and status["progress"] >= at_least:
                return
            time.sleep(0.05)
        raise AssertionError(f"{job_id} never got past {at_least}: {self.status(job_id)}")

    def report(self, job_id: str) -> Report:
        return Report.model_validate_json(self.http.get(f"/v1/audits/{job_id}/report").content)

    def dump(self) -> None:
        """The logs that say why, worker first; the API's access lines (our own polling) left out."""
        order = {"worker": 0, "api": 1, "beat": 2}
        for f in sorted(self.logs.glob("*.log"), key=lambda f: (order.get(f.stem.split("-")[0], 3), f.name)):
            lines = [line for line in f.read_text(errors="replace").splitlines() if '"GET /v1/' not in line]
            print(f"--- {f.name}\n" + "\n".join(lines)[-(1500 if f.stem == "beat" else 5000) :])


def _same_audits(report: Report, reference: Report) -> None:
    assert report.verdict == reference.verdict
    assert [a.name for a in report.audits] == [a.name for a in reference.audits]
    for got, want in zip(report.audits, reference.audits, strict=True):
        assert (got.verdict, got.summary, got.metrics, got.findings) == (
            want.verdict,
            want.summary,
            want.metrics,
            want.findings,
        )


@pytest.fixture(scope="module")
def outage(s3_endpoint, tiny_model, tmp_path_factory) -> Iterator[Outage]:  # type: ignore[no-untyped-def]
    """The stack on a private broker *and a database of its own*: the outbox is in the database, and
    any other relay of this session (the in-process app's, on the shared Redis) would otherwise send
    this stack's waiting messages to its own broker, where no worker of this stack would see them."""
    with own_database(migrate=True) as pg:
        yield from _outage(pg, s3_endpoint, tiny_model, tmp_path_factory)


def _outage(pg_migrated, s3_endpoint, tiny_model, tmp_path_factory) -> Iterator[Outage]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("outages")
    broker = PrivateRedis(tmp)
    broker.start()
    env = prod_env(pg_url=pg_migrated, redis_url=broker.url, s3_endpoint=s3_endpoint, data_dir=tmp / "data")
    env |= {
        "OCCULTA_HEARTBEAT_STALE_SECONDS": "6",
        "OCCULTA_SWEEP_INTERVAL_SECONDS": "2",
        "OCCULTA_SHARD_SIZE": "0",
    }
    logs = tmp / "logs"
    try:
        with run_stack(env, log_dir=logs) as stack:
            beat = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker.app",
                    "beat",
                    "-s",
                    str(tmp / "beat-schedule"),
                ],
                env=_child_env(env),
                cwd=ROOT,
                stdout=(logs / "beat.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            stack.procs.append(beat)
            http = httpx.Client(base_url=stack.url, headers=stack.headers, timeout=120)
            # A first upload imports torch in the API process: slow on a busy machine.
            with OccultaClient(stack.url, stack.key, retries=0, timeout=180) as client:
                model = client.upload_model(tiny_model.card, tiny_model.weights)
                dataset = client.register_dataset(tiny_model.data_ref)
            body = {
                "model_id": model.id,
                "dataset_id": dataset.id,
                "audits": ["missingness_bias"],
                "config": CONFIG,
                "samples": SAMPLES,
                "seed": 2,
            }
            o = Outage(stack, broker, http, body, reference=None, logs=logs)  # type: ignore[arg-type]
            undisturbed = o.submit()
            final = o.wait(undisturbed, timeout=180)
            assert final["status"] == "succeeded", final
            o.reference = o.report(undisturbed)
            yield o
            http.close()
    finally:
        broker.kill()


def test_an_audit_submitted_while_the_broker_is_down_runs_within_a_minute_of_its_return(outage) -> None:  # type: ignore[no-untyped-def]
    outage.broker.kill()
    job_id = outage.submit()  # 202: the job and its message are in the database
    time.sleep(3)
    assert outage.status(job_id)["status"] == "queued"
    outage.broker.start()
    back = time.monotonic()
    outage.wait(job_id, timeout=60, until=("running", "succeeded", "failed"))
    started = time.monotonic() - back
    final = outage.wait(job_id, timeout=60 - started)
    finished = time.monotonic() - back
    print(
        json.dumps(
            {
                "broker_down_submission": {
                    "started_after_return_s": round(started, 1),
                    "finished_after_return_s": round(finished, 1),
                }
            }
        )
    )
    assert final["status"] == "succeeded", final
    _same_audits(outage.report(job_id), outage.reference)


def test_a_broker_restart_mid_audit_ends_with_the_undisturbed_report(outage) -> None:  # type: ignore[no-untyped-def]
    job_id = outage.submit()
    outage.wait_running(job_id, at_least=0.15)
    outage.broker.kill()
    time.sleep(2)
    outage.broker.start()
    final = outage.wait(job_id, timeout=180)
    assert final["status"] == "succeeded", final
    _same_audits(outage.report(job_id), outage.reference)


def test_a_sigkilled_worker_mid_audit_ends_with_the_undisturbed_report(outage) -> None:  # type: ignore[no-untyped-def]
    job_id = outage.submit()
    outage.wait_running(job_id, at_least=0.15)
    worker = outage.stack.procs[1]
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    replacement = start_worker(
        outage.stack.env, (outage.logs / "worker-after-kill.log").open("wb"), name="w-after-kill"
    )
    outage.stack.procs.insert(1, replacement)
    final = outage.wait(job_id, timeout=240)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2  # the sweep found the heartbeat stale and re-queued it once
    _same_audits(outage.report(job_id), outage.reference)
