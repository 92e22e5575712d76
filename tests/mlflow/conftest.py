"""The gate's loopback fake server and clean CI environment serve the `submit --mlflow` tests too."""

from __future__ import annotations

import pytest

from tests.gate.conftest import _ci_environment, server  # noqa: F401  (fixtures)

try:
    import mlflow  # noqa: F401
except ImportError:  # the extra is part of `all`: a missing one is a broken install, not a skip
    pytest.fail("MLflow is missing: pip install 'occulta[mlflow]'", pytrace=False)
