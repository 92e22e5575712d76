"""Every service test file carries the `service` marker (pyproject: "needs PostgreSQL / Redis / S3 on
loopback"), so `pytest -m "not service"` runs exactly the tests that need no running services."""

from __future__ import annotations

import re
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1] / "service"


def test_every_service_test_file_is_marked_service() -> None:
    files = sorted(SERVICE.glob("test_*.py"))
    assert files
    unmarked = [
        f.name
        for f in files
        if not re.search(r"^pytestmark = .*pytest\.mark\.service\b", f.read_text(), re.MULTILINE)
    ]
    assert unmarked == []
