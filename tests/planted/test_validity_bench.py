"""The population bench's smoke run: planted and clean models through the product's audit path."""

from __future__ import annotations

import json
from pathlib import Path

from auditors.zoo.triggers import BIASES, KINDS
from bench.validity import auroc, main, population


def test_quick_population_runs_the_product_path_and_scores_it(tmp_path: Path) -> None:
    result = main(["--quick", "--out", str(tmp_path)])
    rows = {r["case"]: r for r in result["cases"]}
    assert len(rows) == 5 and result["summary"]["clean"] == 2
    patch = rows["shapes-patch-1-cnn-s1"]
    # The fixed patch is used by its model and found, with a tight box, by the audit the CLI runs.
    assert patch["stamp_flip"] >= 0.3 and patch["must_find"]
    assert patch["detected"] and patch["best_iou"] >= 0.5 and patch["verdict"] == "fail"
    assert rows["photos-clean-weak-cnn-s2"]["weak"]
    # No clean twin fails its verdict: the worst bug is a fail on a model that does not cheat.
    assert [r["verdict"] for r in result["cases"] if r["kind"] == "none"] == ["pass", "pass"]
    saved = json.loads((tmp_path / "validity.json").read_text())
    assert saved["summary"]["per_kind"]["patch"]["detected_must"] == 1
    assert "| patch | fixed |" in (tmp_path / "validity.md").read_text()


def test_auroc_counts_ties_half() -> None:
    assert auroc([2.0, 1.0], [0.0]) == 1.0
    assert auroc([1.0], [1.0]) == 0.5
    assert auroc([], [1.0]) is None


def test_another_image_size_names_its_cases_and_keeps_the_design() -> None:
    at32, at64 = population(False), population(False, 64)
    assert len(at64) == len(at32) == 4 * len(KINDS) * len(BIASES) and {c.size for c in at64} == {64}
    assert [c.name for c in at64] == [f"{c.name}-64px" for c in at32]
    assert {c.size for c in population(True, 48)} == {48}
