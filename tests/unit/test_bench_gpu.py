"""`make bench-gpu`'s script runs end to end at the smallest sizes, so the GPU benchmark stays tested."""

from __future__ import annotations

import json

import pytest

from bench import gpu


@pytest.mark.slow
def test_gpu_bench_runs_on_the_cpu_and_records_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    result = gpu.main(["--tiny", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    cnn_rows = {r["what"] for r in result["forward"]["cnn"]["rows"]}
    assert {
        "plain, eager",
        "masked layer_mask, eager",
        "plain, compiled",
        "masked black, compiled",
    } <= cnn_rows
    assert "masked token_drop, eager" in {r["what"] for r in result["forward"]["vit"]["rows"]}
    assert result["forward"]["cnn"]["skipped"] == {"compiled + CUDA graphs": "CUDA graphs need a CUDA device"}
    assert result["occlusion"]["windows"] == 64
    assert result["lime"]["speedup_vs_captum_per_eval_64"] > 0
    assert result["token_drop"]["speedup"] > 0
    for battery in result["battery"]:
        assert [r["audit"] for r in battery["audits"]] == list(gpu.BATTERY)
        assert all(r["estimate_s"] > 0 and r["measured_s"] > 0 for r in battery["audits"])
    # Absolute targets are GPU targets: a CPU run reports them as not applicable, never as met.
    absolute = [t for t in result["targets"] if "seconds per image" in t["target"]]
    assert absolute and all(t["met"] is None for t in absolute)
