"""A database outage on a running API server (real uvicorn, a private PostgreSQL that the test stops
and starts): every route answers 503 with `Retry-After` and the error shape, on the same keep-alive
connection, and the server serves again once the database is back."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.fixtures.service import prod_env, run_stack
from tests.service.private_pg import private_postgres

pytestmark = pytest.mark.service

ROUTES = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/datasets", None),
    ("GET", "/v1/audits", None),
    ("GET", "/v1/audits/aud_0123456789abcdef0123", None),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"name": "ci"}),
    ("POST", "/v1/datasets", {"ref": "synthetic:shapes?n=64"}),
    ("POST", "/v1/audits", {"model_id": "mdl_x", "dataset_id": "ds_x", "audits": ["missingness_bias"]}),
    (
        "POST",
        "/v1/gate",
        {"audit_id": "aud_x", "policy": "assertions:\n  missingness_bias.verdict: [error]\n"},
    ),
    ("DELETE", "/v1/models/mdl_x", None),
]


def _local_port(r: httpx.Response) -> int:
    return int(r.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_a_database_outage_is_503_with_retry_after_and_keeps_the_connection(  # type: ignore[no-untyped-def]
    tmp_path: Path, redis_url, s3_endpoint
) -> None:
    with private_postgres() as pg:
        env = prod_env(
            pg_url=pg.url, redis_url=redis_url, s3_endpoint=s3_endpoint, data_dir=tmp_path / "data"
        )
        with run_stack(env, worker=False, log_dir=tmp_path / "logs") as stack:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30, limits=limits) as http:
                first = http.get("/v1/models")
                assert first.status_code == 200
                port = _local_port(first)

                pg.stop()
                for method, path, body in ROUTES:
                    r = http.request(method, path, json=body)
                    assert r.status_code == 503, f"{method} {path}: {r.status_code} {r.text[:300]}"
                    assert int(r.headers["retry-after"]) > 0
                    assert r.json()["error"]["code"] == "database_unavailable"
                    assert _local_port(r) == port, f"{method} {path} came on a new connection"
                ready = http.get("/readyz")
                assert ready.status_code == 503 and int(ready.headers["retry-after"]) > 0
                assert ready.json()["checks"]["database"] == "unavailable"
                assert str(pg.port) not in ready.text and "127.0.0.1" not in ready.text
                assert http.get("/livez").status_code == 200
                assert http.get("/metrics").status_code == 200
                assert _local_port(http.get("/v1/models")) == port

                pg.start()
                assert http.get("/v1/models").status_code == 200
                assert http.post("/v1/keys", json={"name": "after"}).status_code == 201
        log = (tmp_path / "logs" / "api.log").read_text()
        assert "Exception in ASGI application" not in log
        assert not re.search(r"\b500\b", " ".join(line for line in log.splitlines() if '" ' in line))
