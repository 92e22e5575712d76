"""CPU time of the spurious-signal audit with and without the new discovery steps, side by side.

Issue 18 asks that, on a 4-class 32-px model with 160 images, the audit stays within 3x of its
earlier CPU time. Severity reuses the removal test the audit already ran, so the new work is the
low-level test (`lowlevel_test`), the pattern test (`pattern_test`), the moving-mark search and
tests (`moving_test`) and the located test (`located_test`); this runs the audit through `occulta.runner.run_battery` on one planted model
and its clean twin, alternating the configs without them and with them (the defaults) `--repeats`
times on the same warm process, and reports process CPU seconds (not wall time, which other work on
the machine inflates).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.spurious_cost

Writes bench/results/spurious_cost.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from auditors.zoo.population import CNN, PopCase
from bench.validity import _save, built_case


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from occulta.runner import run_battery

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    planted = PopCase("shapes", "moving_tag", 1.0, CNN, seed=18, n_audit=160)
    without = {"lowlevel_test": False, "pattern_test": False, "moving_test": False, "located_test": False}
    configs = {"without_new_steps": without, "with_new_steps": {}}
    seconds: dict[str, list[float]] = {f"{c}/{k}": [] for c in ("planted", "clean") for k in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for label, case in (("planted", planted), ("clean", planted.twin())):
            built, _ = built_case(case, args.cache)
            folder = Path(tmp) / label
            folder.mkdir()
            card, data, _ = _save(built, folder)
            for r in range(args.repeats):
                for name, config in configs.items():
                    t0 = time.process_time()
                    run_battery(
                        card_path=card,
                        data_ref=data,
                        audits=["spurious_signal"],
                        audit_configs={"spurious_signal": config},
                        out_dir=folder / f"{name}-{r}",
                        samples=160,
                        seed=0,
                    )
                    seconds[f"{label}/{name}"].append(round(time.process_time() - t0, 2))
    best = {k: min(v) for k, v in seconds.items()}
    result = {
        "models": [planted.name, planted.twin().name],
        "images": 160,
        "cpu_seconds": seconds,
        "ratio": {
            label: round(best[f"{label}/with_new_steps"] / best[f"{label}/without_new_steps"], 3)
            for label in ("planted", "clean")
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spurious_cost.json").write_text(json.dumps(result, indent=2))
    print("| config | CPU s (best of runs) |\n|---|---|")
    for k, v in best.items():
        print(f"| {k} | {v} |")
    print(f"ratio: {result['ratio']}")
    return result


if __name__ == "__main__":
    main()
