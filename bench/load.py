"""Does the API hold 100, 200 and 1,000 concurrent clients? Real uvicorn (one process, production
settings), real PostgreSQL and Redis, all on loopback; each client opens its own connection and sends
one request, all at once.

    python -m bench.load [--levels 100 200 1000] [--timeout 120] [--budget 180]

Then steady-state levels (`--steady 1 10 50 200`): that many clients waiting on running audits for
`--steady-seconds`, by polling and by long-polling (`bench.load_steady`).

Per burst level and route (GET /v1/models, POST /v1/audits with a unique Idempotency-Key) it records the
p50/p95/p99 latency, 2xx / 4xx / 5xx counts and client time-outs or resets, and checks that every
accepted audit exists exactly once in the database. It creates and drops its own database, uses a
private queue (deleted at the end) and a temp folder for objects; the whole run stops after `--budget`
seconds. Prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = os.environ.get("OCCULTA_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CLASSES = ["circle", "square", "triangle", "cross"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Outcome:
    status: int  # 0: no response (time-out, reset, refused)
    seconds: float
    body: dict[str, Any] | list[Any] | None
    error: str = ""


async def fire(
    base_url: str, headers: dict[str, str], calls: Sequence[Call], *, timeout: float
) -> list[Outcome]:
    """Send every call at once, each on its own connection (a client of its own), and wait for all."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, limits=limits) as http:
        gate = asyncio.Event()

        async def one(call: Call) -> Outcome:
            await gate.wait()
            start = time.perf_counter()
            try:
                r = await http.request(call.method, call.path, json=call.body, headers=call.headers)
            except httpx.HTTPError as exc:
                return Outcome(0, time.perf_counter() - start, None, type(exc).__name__)
            elapsed = time.perf_counter() - start
            try:
                body = r.json()
            except ValueError:
                body = None
            return Outcome(r.status_code, elapsed, body)

        tasks = [asyncio.create_task(one(c)) for c in calls]
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    statuses = Counter(o.status for o in outcomes)
    times = [o.seconds for o in outcomes if o.status]
    return {
        "requests": len(outcomes),
        "2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "4xx": sum(n for s, n in statuses.items() if 400 <= s < 500),
        "5xx": sum(n for s, n in statuses.items() if s >= 500),
        "no_response": statuses.get(0, 0),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "p50_ms": round(percentile(times, 0.50) * 1000, 1),
        "p95_ms": round(percentile(times, 0.95) * 1000, 1),
        "p99_ms": round(percentile(times, 0.99) * 1000, 1),
        "max_ms": round(max(times, default=float("nan")) * 1000, 1),
    }


def audit_calls(model_id: str, dataset_id: str, n: int, tag: str) -> list[Call]:
    body = {"model_id": model_id, "dataset_id": dataset_id, "audits": ["missingness_bias"], "config": {}}
    return [
        Call("POST", "/v1/audits", body | {"seed": i}, {"Idempotency-Key": f"{tag}-{i}"}) for i in range(n)
    ]


def accepted_ids(outcomes: list[Outcome]) -> list[str]:
    return [o.body["id"] for o in outcomes if 200 <= o.status < 300 and isinstance(o.body, dict)]


def count_jobs(db_url: str, ids: list[str]) -> Counter[str]:
    """How many rows each accepted id has (exactly one each is the requirement)."""
    import psycopg

    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT id FROM audits WHERE id = ANY(%s)", (ids,)).fetchall()
    return Counter(r[0] for r in rows)


def _setup(env: dict[str, str], folder: Path) -> tuple[str, str, str]:
    """Migrate, make a tenant key, and insert one model and one dataset row to audit against."""
    from occulta.db import DatasetRecord, ModelRecord, make_engine, make_session_factory, new_id
    from occulta.db.migrate import upgrade
    from occulta.service.keys import create_tenant_key

    upgrade(env["OCCULTA_DATABASE_URL"])
    engine = make_engine(env["OCCULTA_DATABASE_URL"])
    with make_session_factory(engine)() as s:
        new = create_tenant_key(s, tenant="bench")
        model = ModelRecord(
            id=new_id("mdl"),
            tenant_id=new.tenant_id,
            name="bench",
            arch="occulta_resnet_tiny",
            format="safetensors",
            sha256="0" * 64,
            size_bytes=1,
            storage_key=f"tenants/{new.tenant_id}/models/bench/",
            num_classes=4,
            class_names=CLASSES,
            card={"arch": "occulta_resnet_tiny"},
        )
        data = DatasetRecord(
            id=new_id("ds"),
            tenant_id=new.tenant_id,
            kind="synthetic",
            ref="synthetic:shapes?n=64",
            n_images=64,
            class_names=CLASSES,
        )
        s.add_all([model, data])
        s.commit()
        ids = (new.key, model.id, data.id)
    engine.dispose()
    return ids


def _start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("OCCULTA_")} | env
    child |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--backlog", "4096", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=child, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"the API did not become ready; see {log}")


def bench_env(db_url: str, folder: Path) -> dict[str, str]:
    return {
        "OCCULTA_ENV": "production",
        "OCCULTA_SECRET_KEY": secrets.token_urlsafe(32),
        "OCCULTA_DATA_DIR": str(folder / "data"),
        "OCCULTA_DATABASE_URL": db_url,
        "OCCULTA_BROKER_URL": REDIS,
        "OCCULTA_QUEUE": f"occulta-bench-{secrets.token_hex(4)}",
        "OCCULTA_STORAGE_URL": f"file://{folder / 'objects'}",
        "OCCULTA_DEVICE": "cpu",
        # Capacity, not quotas, is measured: one tenant sends all 1,300+ audits.
        "OCCULTA_TENANT_MAX_ACTIVE": "0",
    }


def run(
    levels: list[int], timeout: float, budget: float, steady: Sequence[int] = (), steady_seconds: float = 10.0
) -> dict[str, Any]:
    import psycopg
    import redis

    name = f"occulta_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    results: dict[str, Any] = {"levels": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="occulta-bench-load-") as tmp:
        folder = Path(tmp)
        env = bench_env(db_url, folder)
        key, model_id, dataset_id = _setup(env, folder)
        port = _free_port()
        proc = _start_api(env, port, folder / "api.log")
        base = f"http://127.0.0.1:{port}"
        try:
            headers = {"Authorization": f"Bearer {key}"}
            # Warm-up: imports and the first connections are paid once, not by the first level.
            asyncio.run(fire(base, headers, [Call("GET", "/v1/models")] * 10, timeout=timeout))
            asyncio.run(fire(base, headers, audit_calls(model_id, dataset_id, 4, "warm"), timeout=timeout))
            for level in levels:
                if time.monotonic() - started > budget:
                    results["levels"][str(level)] = {"skipped": f"over the {budget:.0f} s budget"}
                    continue
                gets = asyncio.run(fire(base, headers, [Call("GET", "/v1/models")] * level, timeout=timeout))
                posts = asyncio.run(
                    fire(
                        base, headers, audit_calls(model_id, dataset_id, level, f"l{level}"), timeout=timeout
                    )
                )
                ids = accepted_ids(posts)
                rows = count_jobs(db_url, ids)
                post_summary = summarise(posts) | {
                    "accepted": len(ids),
                    "accepted_exactly_once": sum(1 for i in ids if rows[i] == 1) == len(ids) == len(set(ids)),
                }
                results["levels"][str(level)] = {
                    "GET /v1/models": summarise(gets),
                    "POST /v1/audits": post_summary,
                }
            if steady:
                from bench.load_steady import run_steady

                made = asyncio.run(
                    fire(
                        base,
                        headers,
                        audit_calls(model_id, dataset_id, max(steady), "steady"),
                        timeout=timeout,
                    )
                )
                results["steady"] = run_steady(
                    base,
                    headers,
                    db_url,
                    accepted_ids(made),
                    list(steady),
                    seconds=steady_seconds,
                    change_every=5.0,
                )
            log = (folder / "api.log").read_text()
            results["server_tracebacks"] = log.count("Traceback")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            redis.Redis.from_url(REDIS).delete(env["OCCULTA_QUEUE"])
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def print_table(results: dict[str, Any]) -> None:
    head = f"{'clients':>7}  {'route':<16} {'2xx':>5} {'4xx':>4} {'5xx':>4} {'none':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    print(head)
    print("-" * len(head))
    for level, routes in results["levels"].items():
        if "skipped" in routes:
            print(f"{level:>7}  {routes['skipped']}")
            continue
        for route, s in routes.items():
            print(
                f"{level:>7}  {route:<16} {s['2xx']:>5} {s['4xx']:>4} {s['5xx']:>4} {s['no_response']:>5} "
                f"{s['p50_ms']:>8} {s['p95_ms']:>8} {s['p99_ms']:>8}"
            )
    print(f"server tracebacks: {results['server_tracebacks']}; total {results['seconds']} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 200, 1000])
    parser.add_argument("--timeout", type=float, default=120.0, help="client time-out per request, seconds")
    parser.add_argument("--budget", type=float, default=180.0, help="stop starting new levels after this")
    parser.add_argument("--steady", type=int, nargs="*", default=[1, 10, 50, 200], help="waiting clients")
    parser.add_argument("--steady-seconds", type=float, default=12.0, help="length of each steady level")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = run(args.levels, args.timeout, args.budget, args.steady, args.steady_seconds)
    results["machine"] = {
        "note": "the API, PostgreSQL, Redis and the clients share the machine's cores with other work "
        "(during development: four other agents); the load averages say how busy it was",
        "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    results["client_timeout_s"] = args.timeout
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    if "steady" in results:
        from bench.load_steady import print_steady

        print_steady(results["steady"])


if __name__ == "__main__":
    main()
