"""Discovery on trained models with planted shortcuts (no hint), and on their clean twin.

Each model is first checked to use its shortcut (the true artifact stamped on other classes flips at
least 30% of them), so a miss is discovery's fault, not the training's. The wider design (every kind,
place and bias, both tasks and architectures) is `bench/validity.py`; this is its bounded CI slice.
"""

from __future__ import annotations

from functools import cache

import pytest
import torch

from auditors.audits.spurious_signal.boxes import iou
from auditors.audits.spurious_signal.discover import Discovery, discover
from auditors.audits.spurious_signal.nulls import Probe
from auditors.engine import plain_logits
from auditors.zoo.planted import MEAN, STD, Case, Planted, build

pytestmark = pytest.mark.slow

CNN, VIT = "occulta_resnet_tiny", "occulta_vit_tiny"
PATCH = Case("stripes", "patch", "corner", 1.0, CNN, n_train=800)
BAR_VIT = Case("stripes", "bar", "corner", 0.5, VIT, n_train=800)
TINT = Case("shapes", "tint", "-", 1.0, CNN, n_train=800)


@cache
def _run(case: Case) -> tuple[Planted, Discovery]:
    torch.set_num_threads(1)
    planted = build(case, epochs=8 if "vit" in case.arch else 4)
    x, labels = planted.audit.images, planted.audit.labels
    pred = plain_logits(planted.model, x, mean=MEAN, std=STD).argmax(1)
    probe = Probe(planted.model, MEAN, STD, "blur", seed=0)
    return planted, discover(probe, x, pred, labels, [f"c{i}" for i in range(case.classes)])


@pytest.mark.parametrize("case", [PATCH, BAR_VIT], ids=lambda c: c.name)
def test_localized_shortcut_the_model_uses_is_found_without_a_hint_with_a_tight_box(case):
    planted, found = _run(case)
    assert planted.stamp_flip is not None and planted.stamp_flip >= 0.3, "the model must use its shortcut"
    hits = [c for c in found.confirmed if c["class_index"] == case.cls]
    assert hits and iou(hits[0]["box"], case.box) >= 0.5, [c["box"] for c in found.candidates]
    assert not found.global_confirmed
    flip = hits[0]["flip"]
    assert flip["n"] >= 50 and flip["lo"] <= flip["value"] <= flip["hi"] and flip["p_value"] < 0.05
    assert hits[0]["removal"]["n"] > 0


@pytest.mark.parametrize("case", [PATCH.twin(), BAR_VIT.twin()], ids=lambda c: c.name)
def test_clean_twin_gives_no_finding(case):
    _, found = _run(case)
    assert found.confirmed == [] and found.global_confirmed == []


def test_global_tint_is_a_global_finding_and_never_a_box():
    planted, found = _run(TINT)
    assert planted.stamp_flip is not None and planted.stamp_flip >= 0.3
    assert [g["class_index"] for g in found.global_confirmed] == [TINT.cls]
    assert found.confirmed == []
