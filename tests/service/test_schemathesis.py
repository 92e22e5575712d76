"""Property-based requests generated from /openapi.json (schemathesis): for a bounded, derandomized
number of examples per operation, no server error, and every JSON 4xx in the API's error shape.

Driven through schemathesis' Python API (one Hypothesis run per operation) rather than its pytest
plugin, which does not load under this pytest."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.service

EXAMPLES = 25


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type") or [""]
    return str(value if isinstance(value, str) else value[0])


def _check(case: Any, headers: dict[str, str], problems: list[str]) -> None:
    response = case.call(headers=headers)
    where = f"{case.method} {case.formatted_path}"
    if response.status_code >= 500:
        problems.append(f"{where}: {response.status_code} {response.text[:300]}")
    elif response.status_code >= 400 and _content_type(response).startswith("application/json"):
        body = response.json()
        if case.path != "/readyz" and not (
            isinstance(body, dict) and set(body) == {"error"} and {"code", "message"} <= set(body["error"])
        ):
            problems.append(f"{where}: {response.status_code} without the error shape: {response.text[:300]}")


def test_generated_requests_never_get_a_server_error(app, client, alice) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def run(case: Any) -> None:
            _check(case, alice.headers, problems)

        run()
    assert problems == [], "\n".join(problems[:20])
