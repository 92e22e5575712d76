"""The API's producer: an outbox relay thread that hands task messages to the broker by *name* (the
API never imports the worker package; names come from `occulta.jobs.task_names`).

A request commits its job with an outbox row and calls `flush(job_id)`, which sends that row at once
while the broker is up. When a send fails the relay thread takes over and retries (capped backoff,
`occulta.jobs.outbox`), and later requests skip the inline attempt until the broker is back, so a
request waits at most one short connect timeout on a dead broker, and a broker's return starts the
waiting audits within seconds.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from occulta.errors import ServiceError
from occulta.jobs import fairness, outbox
from occulta.settings import Settings

log = logging.getLogger("occulta.api")
IDLE_POLL_SECONDS = 1.0


class Queue:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.policy = fairness.Policy.of(settings)  # how the fleet is shared (submit and the tick use it)
        self.celery = Celery("occulta-api")
        self.celery.config_from_object(settings.producer_config())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False  # the last send failed: leave sending to the relay until one succeeds

    def send(self, task: str, args: list[Any]) -> None:
        """Hand one message to the broker; raises when it did not take it."""
        self.celery.send_task(task, args=args, queue=self.settings.queue, retry=False)

    def start_relay(self) -> None:
        """Start the relay thread (once per process); it also sends rows left by an earlier process."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def flush(self, job_id: str) -> None:
        """Send the job's outbox rows now, unless the broker is known to be down (then the relay will)."""
        if not self._failing:
            try:
                with self.sessions() as session:
                    result = outbox.relay(session, self.send, job_id=job_id, first_send=True)
                self._failing = bool(result.failed)
            except Exception:
                log.exception("could not send the messages of audit %s; the relay retries", job_id)
                self._failing = True
        if self._failing:
            self._wake.set()

    def relay_once(self) -> outbox.RelayResult:
        """Release what the fleet has room for (a slot freed since the last tick), then send."""
        with self.sessions() as session:
            fairness.dispatch(session, self.policy)
            return outbox.relay(session, self.send)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.relay_once()
                if result.failed and not self._failing:
                    log.warning("broker not taking messages (%s); the outbox keeps them", result.error)
                elif result.sent and self._failing:
                    log.info("broker back: %d queued messages sent", result.sent)
                self._failing = bool(result.failed)
            except Exception:  # a database outage: keep the thread alive and try again
                log.exception("outbox relay failed; retrying")
            self._wake.wait(IDLE_POLL_SECONDS)
            self._wake.clear()

    def check(self) -> None:
        """Raise ServiceError when the broker cannot be reached (for /readyz)."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceError(f"broker not reachable: {exc}") from exc

    def stop_relay(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        """Stop the relay. Broker connections are left to process exit: kombu shares producer pools
        between Celery apps with the same broker URL, so force-closing ours would break another app's
        sends in this process (tests build several apps)."""
        self.stop_relay()
