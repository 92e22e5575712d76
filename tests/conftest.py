"""Test-wide settings: offline, single-threaded torch, and tiny planted-shortcut models trained once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Test-only audits, registered as a plug-in would be (auditors/registry.py); subprocesses inherit it.
os.environ.setdefault("OCCULTA_EXTRA_AUDITS", "tests.plugins.noop,tests.plugins.toy")

import pytest

pytest_plugins = ["tests.fixtures.models"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - the audit extra is always installed for tests
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
