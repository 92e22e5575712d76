"""Discovery on trained models with planted shortcuts (no hint), and on their clean twin, through the
audit's own path (`get_auditor("spurious_signal").run`, what a worker runs for a single audit).

Each model is first checked to use its shortcut (the true artifact stamped on other classes flips at
least 30% of them), so a miss is discovery's fault, not the training's. The wider design (every kind,
place and bias, both tasks and architectures, through `occulta audit`'s path) is `bench/validity.py`;
this is its bounded CI slice with `tests/planted/test_population_path.py`.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pytest
import torch

from auditors.audits.context import AuditContext
from auditors.audits.spurious_signal.boxes import iou
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.registry import get_auditor
from auditors.report import AuditResult
from auditors.zoo.planted import MEAN, STD, Case, Planted, build

pytestmark = pytest.mark.slow

CNN, VIT = "occulta_resnet_tiny", "occulta_vit_tiny"
PATCH = Case("stripes", "patch", "corner", 1.0, CNN, n_train=800)
BAR_VIT = Case("stripes", "bar", "corner", 0.5, VIT, n_train=800)
TINT = Case("shapes", "tint", "-", 1.0, CNN, n_train=800)
FAST = {"methods": ["gradient"], "n_overlays": 0, "strategy": "blur"}


@cache
def _run(case: Case) -> tuple[Planted, AuditResult]:
    torch.set_num_threads(1)
    planted = build(case, epochs=8 if "vit" in case.arch else 4)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = AuditContext(
            model=planted.model,
            images=planted.audit.images,
            labels=planted.audit.labels,
            mean=MEAN,
            std=STD,
            class_names=[f"c{i}" for i in range(case.classes)],
            out_dir=Path(tmp),
        )
        result = get_auditor("spurious_signal").run(ctx, SpuriousConfig.model_validate(FAST))
    return planted, result


def _shortcuts(result: AuditResult, kind: str) -> list:
    return [f for f in result.findings if f.kind == kind]


@pytest.mark.parametrize("case", [PATCH, BAR_VIT], ids=lambda c: c.name)
def test_localized_shortcut_the_model_uses_is_found_without_a_hint_with_a_tight_box(case):
    planted, result = _run(case)
    assert planted.stamp_flip is not None and planted.stamp_flip >= 0.3, "the model must use its shortcut"
    hits = [f for f in _shortcuts(result, "spurious_region") if f.class_name == f"c{case.cls}"]
    assert result.verdict == "fail" and hits, result.findings
    assert iou(hits[0].box, case.box) >= 0.5, [c["box"] for c in result.metrics["candidates"]]
    assert not _shortcuts(result, "global_shortcut")
    flip = hits[0].evidence["flip"]
    assert flip["n"] >= 50 and flip["lo"] <= flip["value"] <= flip["hi"] and flip["p_value"] < 0.05
    assert hits[0].evidence["removal"]["n"] > 0


@pytest.mark.parametrize("case", [PATCH.twin(), BAR_VIT.twin()], ids=lambda c: c.name)
def test_clean_twin_gives_no_finding(case):
    _, result = _run(case)
    assert result.verdict == "pass", result.findings
    assert not _shortcuts(result, "spurious_region") and not _shortcuts(result, "global_shortcut")


def test_global_tint_is_a_global_finding_and_never_a_box():
    planted, result = _run(TINT)
    assert planted.stamp_flip is not None and planted.stamp_flip >= 0.3
    assert [f.class_name for f in _shortcuts(result, "global_shortcut")] == [f"c{TINT.cls}"]
    assert not _shortcuts(result, "spurious_region")
