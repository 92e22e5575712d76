"""Planted models audited through the path `occulta audit` runs (`occulta.runner.run_battery`), as the
validity bench does (`bench/validity.py`): a bounded CI slice of its population.

Each planted model is first checked to use its shortcut (stamping the trigger on other classes flips at
least 30% of them), so a miss is the audit's fault, not the training's. Whole-image patterns (a blended
noise pattern, a faint sinusoid) have no box and move no colour or sharpness statistic: only the pattern
test sees them; their clean twins, a weak one included, must not fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from auditors.zoo.population import CNN, VIT, PopCase
from bench.validity import run_case

pytestmark = pytest.mark.slow

BLEND = PopCase("shapes", "blend", 1.0, CNN, seed=101, n_train=1200, n_audit=160)
SIG_VIT = PopCase("photos", "sig", 1.0, VIT, seed=102, n_train=1200, n_audit=160)


def _run(case: PopCase, tmp_path: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    return run_case(case, tmp_path)


@pytest.mark.parametrize("case", [BLEND, SIG_VIT], ids=lambda c: c.name)
def test_a_whole_image_pattern_the_model_uses_fails_it_with_a_pattern_finding(case: PopCase, tmp_path):
    row = _run(case, tmp_path)
    assert row["stamp_flip"] >= 0.3, "the model must use its shortcut"
    assert row["verdict"] == "fail" and row["detected"], row["findings"]
    patterns = [f for f in row["findings"] if f["kind"] == "global_shortcut" and f["class"] == "class0"]
    assert patterns and "faint pattern" in patterns[0]["summary"], row["findings"]


@pytest.mark.parametrize("case", [BLEND.twin(), SIG_VIT.twin(weak=True)], ids=lambda c: c.name)
def test_the_clean_twins_of_pattern_models_do_not_fail(case: PopCase, tmp_path):
    row = _run(case, tmp_path)
    assert row["verdict"] != "fail", row["findings"]
