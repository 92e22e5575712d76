"""`occulta migrate` and `occulta admin create-key` from any directory, against the embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.service import ROOT

pytestmark = pytest.mark.service


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


def test_serve_keeps_a_random_private_secret_in_its_data_folder(tmp_path, monkeypatch):
    import os
    import stat

    from occulta.cli.service import ensure_local_secret
    from occulta.settings import DEV_SECRET

    monkeypatch.delenv("OCCULTA_SECRET_KEY", raising=False)
    ensure_local_secret(tmp_path)
    first = os.environ["OCCULTA_SECRET_KEY"]
    assert first != DEV_SECRET and len(first) >= 32
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    monkeypatch.delenv("OCCULTA_SECRET_KEY")
    ensure_local_secret(tmp_path)  # a restart keeps the sessions it signed
    assert os.environ["OCCULTA_SECRET_KEY"] == first
    monkeypatch.setenv("OCCULTA_SECRET_KEY", "set-by-the-operator-0123456789")
    ensure_local_secret(tmp_path / "other")
    assert os.environ["OCCULTA_SECRET_KEY"] == "set-by-the-operator-0123456789"
