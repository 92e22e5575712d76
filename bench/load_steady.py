"""Steady-state levels for `bench.load`: N clients waiting on N running audits for a while, two ways.

- `poll`: each client asks `GET /v1/audits/{id}` again as soon as it has the answer (what `--wait`,
  the dashboard and CI did before long-polling; the issue measured this way).
- `long_poll`: each client asks `GET /v1/audits/{id}?wait=30&since=<ETag>`; a changer moves each
  audit's progress once per `change_every` seconds, the audits' turns spread evenly (independent
  workers' heartbeats: every 30 s by default, so 5 s is six times busier), and a probe client sends
  ordinary requests (`GET /v1/audits/{id}`, `GET /v1/models`) ten times a second meanwhile.

Per level and route, after a 3-second warm-up (the first requests of all clients arrive at once, which
is a burst): requests/s and p50/p95/p99 latency; for long-polls also the lag from a change's
commit to the waiting client's answer; and the database's transactions/s over the level (from
`pg_stat_database`), which is where polling spends the API's capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import httpx

from bench.load import percentile

WARMUP_S = 3.0  # the clients' first requests arrive at once (a burst, measured by the burst levels)


def _stats(times: list[float], seconds: float, errors: int) -> dict[str, Any]:
    return {
        "requests": len(times),
        "errors": errors,
        "per_s": round(len(times) / seconds, 1),
        "p50_ms": round(percentile(times, 0.50) * 1000, 1),
        "p95_ms": round(percentile(times, 0.95) * 1000, 1),
        "p99_ms": round(percentile(times, 0.99) * 1000, 1),
    }


def _commits(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def mark_running(db_url: str, ids: list[str]) -> None:
    import psycopg

    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "UPDATE audits SET status = 'running', progress = 0.01, message = 'bench' WHERE id = ANY(%s)",
            (ids,),
        )


async def _changer(
    db_url: str, ids: list[str], every: float, stop: asyncio.Event, at: dict[str, float]
) -> None:
    """Each audit's progress moves once per `every` seconds, the audits' turns spread evenly over that
    time, as independent workers' heartbeats are."""
    import psycopg

    step = max(0.1, every / len(ids))  # one audit's turn every every/len(ids) s, in steps of >= 0.1 s
    per_step = max(1, round(len(ids) * step / every))
    conn = await psycopg.AsyncConnection.connect(db_url.replace("+psycopg", ""), autocommit=True)
    turn = 0
    try:
        while not stop.is_set():
            await asyncio.sleep(step)
            batch = [ids[(turn + k) % len(ids)] for k in range(per_step)]
            turn = (turn + per_step) % len(ids)
            await conn.execute(
                "UPDATE audits SET progress = LEAST(0.99, progress + 0.001) WHERE id = ANY(%s)", (batch,)
            )
            now = time.perf_counter()
            at.update(dict.fromkeys(batch, now))
    finally:
        await conn.close()


async def level(
    base: str,
    headers: dict[str, str],
    db_url: str,
    ids: list[str],
    *,
    mode: str,
    seconds: float,
    change_every: float,
) -> dict[str, Any]:
    """One steady level: `len(ids)` clients, one audit each, for `seconds`."""
    times: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lags: list[float] = []
    changes: dict[str, float] = {}  # audit id -> when its last change committed
    stop = asyncio.Event()
    measured_from = time.perf_counter() + WARMUP_S
    deadline = measured_from + seconds

    async def timed(http: httpx.AsyncClient, route: str, url: str, **kw: Any) -> httpx.Response | None:
        start = time.perf_counter()
        counted = start >= measured_from  # the clients' first burst of requests is not steady state
        try:
            r = await http.get(url, **kw)
        except httpx.HTTPError:
            errors[route] += counted
            return None
        if r.status_code >= 500:
            errors[route] += counted
        if counted:
            times[route].append(time.perf_counter() - start)
        return r

    async def client(audit_id: str) -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            since = ""
            while time.perf_counter() < deadline:
                if mode == "poll":
                    await timed(http, "GET /v1/audits/{id}", f"/v1/audits/{audit_id}")
                    continue
                left = max(0.0, deadline - time.perf_counter())
                params = {"wait": f"{min(30.0, left):.1f}"} | ({"since": since} if since else {})
                r = await timed(http, "GET /v1/audits/{id}?wait", f"/v1/audits/{audit_id}", params=params)
                if r is None:
                    continue
                tag = r.headers.get("etag", "").strip('"')
                if since and tag != since and audit_id in changes and time.perf_counter() >= measured_from:
                    lags.append(time.perf_counter() - changes[audit_id])
                since = tag

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            while time.perf_counter() < deadline:
                await timed(http, "probe GET /v1/audits/{id}", f"/v1/audits/{ids[0]}")
                await timed(http, "probe GET /v1/models", "/v1/models")
                await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(client(i)) for i in ids]
    if mode == "long_poll":
        tasks += [asyncio.create_task(probe())]
        changer = asyncio.create_task(_changer(db_url, ids, change_every, stop, changes))
    await asyncio.sleep(max(0.0, measured_from - time.perf_counter()))
    before = await asyncio.to_thread(_commits, db_url)
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    commits = await asyncio.to_thread(_commits, db_url) - before
    stop.set()
    if mode == "long_poll":
        await changer
    out: dict[str, Any] = {route: _stats(t, elapsed, errors[route]) for route, t in sorted(times.items())}
    if mode == "long_poll":
        out["change_to_answer"] = {
            "every_s": change_every,
            "answers": len(lags),
            "p50_ms": round(percentile(lags, 0.50) * 1000, 1),
            "p95_ms": round(percentile(lags, 0.95) * 1000, 1),
            "p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        }
    out["db_transactions_per_s"] = round(commits / elapsed, 1)
    out["seconds"] = round(elapsed, 1)
    return out


def run_steady(
    base: str,
    headers: dict[str, str],
    db_url: str,
    ids: list[str],
    clients: list[int],
    *,
    seconds: float,
    change_every: float,
) -> dict[str, Any]:
    """Every level in both modes; `ids` must hold at least max(clients) audits."""
    if len(ids) < max(clients):
        raise RuntimeError(f"only {len(ids)} audits were accepted for {max(clients)} waiting clients")
    mark_running(db_url, ids)
    results: dict[str, Any] = {}
    for n in clients:
        for mode in ("poll", "long_poll"):
            kw = {"mode": mode, "seconds": seconds, "change_every": change_every}
            results[f"{n} {mode}"] = asyncio.run(level(base, headers, db_url, ids[:n], **kw))  # type: ignore[arg-type]
    return results


def print_steady(steady: dict[str, Any]) -> None:
    head = f"{'level':<14} {'route':<28} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'err':>4}"
    print(head)
    print("-" * len(head))
    for name, routes in steady.items():
        for route, s in routes.items():
            if isinstance(s, dict) and "per_s" in s:
                print(
                    f"{name:<14} {route:<28} {s['per_s']:>7} {s['p50_ms']:>8} {s['p95_ms']:>8} {s['p99_ms']:>8} "
                    f"{s['errors']:>4}"
                )
        lag = routes.get("change_to_answer")
        if lag:
            print(
                f"{name:<14} {'change -> answer lag':<28} {'':>7} {lag['p50_ms']:>8} {lag['p95_ms']:>8} {lag['p99_ms']:>8}"
            )
        print(f"{name:<14} {'database transactions/s':<28} {routes['db_transactions_per_s']:>7}")
