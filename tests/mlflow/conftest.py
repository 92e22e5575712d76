"""The gate's loopback fake server and clean CI environment serve the `submit --mlflow` tests too."""

from __future__ import annotations

import pytest

from tests.gate.conftest import _ci_environment, server  # noqa: F401  (fixtures)

try:
    import mlflow  # noqa: F401
except ImportError:  # the extra is part of `all`: a missing one is a broken install, not a skip
    pytest.fail("MLflow is missing: pip install 'occulta[mlflow]'", pytrace=False)


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A new experiment keeps its artifacts under `./mlruns` of the working directory: a tmp one."""
    monkeypatch.chdir(tmp_path)
