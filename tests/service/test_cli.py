"""`occulta migrate` and `occulta admin create-key` from any directory, against the embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.service import ROOT


def _occulta(*args: str, data_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCCULTA_")}
    env |= {"PYTHONPATH": str(ROOT), "OCCULTA_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "occulta", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_migrate_then_create_key_from_another_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    refused = _occulta("admin", "create-key", "--tenant", "acme", data_dir=data, cwd=tmp_path)
    assert refused.returncode == 2 and "run: occulta migrate" in refused.stderr
    migrated = _occulta("migrate", data_dir=data, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "database at revision" in migrated.stdout
    created = _occulta("admin", "create-key", "--tenant", "acme", "--name", "ci", data_dir=data, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("occ_") and "not shown again" in created.stderr

    from occulta.db import make_engine, make_session_factory
    from occulta.service.keys import authenticate

    engine = make_engine(f"sqlite:///{data}/occulta.db")
    with make_session_factory(engine)() as session:
        assert authenticate(session, key) is not None
    engine.dispose()
