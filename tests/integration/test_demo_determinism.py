"""The demo is reproducible: the same seed on the same machine (same CPU kernel family, the demo's
pinned thread count, the same library versions) trains the same weights and writes the same
report.json, timestamps and timings aside. Small sizes, so it runs in well under a minute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditors.registry import audit_infos
from occulta.demo import DEMO_THREADS, audit_demo_model, demo_battery, pin_threads, train_demo_model

TIMING_KEYS = {"created_at", "wall_seconds", "seconds"}


def _without_timings(value: Any) -> Any:
    """The report as data, minus what a clock decides (when it ran, how long each part took)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _run(out: Path) -> dict[str, Any]:
    """Train the demo CNN and audit it on the demo's planted task, at test sizes."""
    battery, _ = demo_battery(None)
    configs = {name: dict(audit_infos()[name].smoke_config) for name in battery}
    card = train_demo_model("cnn", out / "models", seed=0, device="cpu", train_images=192, epochs=1)
    audit_demo_model(
        card, out / "cnn", battery=battery, configs=configs, device="cpu", seed=0, samples=16, eval_images=48
    )
    return json.loads((out / "cnn" / "report.json").read_text(encoding="utf-8"))


@pytest.mark.timeout(600)
def test_two_demo_runs_with_one_seed_write_the_same_report(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    pin_threads()
    try:
        assert torch.get_num_threads() == DEMO_THREADS
        first = _run(tmp_path)  # the same folder twice, so the card path in the report is the same too
        second = _run(tmp_path)
    finally:
        torch.set_num_threads(before)  # the rest of the session keeps its own thread count
    assert first["model"]["weights_sha256"] == second["model"]["weights_sha256"], "training is reproducible"
    assert first["created_at"] != second["created_at"] or first["wall_seconds"] != second["wall_seconds"]
    assert _without_timings(first) == _without_timings(second)
