"""How would one audit scale to N = 1..64 GPU workers? A model fed with the costs `bench.scaling` measured.

    python -m bench.simulate [--gpu-factor 50] [--units 0]

This machine has 2 cores, so more than two workers can only be simulated. For each audit, from its
sharded one-worker run (`bench/results/scaling_<audit>.json`, no time-slicing), the model takes:

- `c`: the audit's own work per unit (image, or picked image), the mean of the shards' `compute_s`
  over their sizes;
- `f`: the fixed cost of a shard: staging its inputs and loading the model and images (`stage_s` +
  `prepare_s`, the mean after the first shard of a process, which also imports torch);
- `q`: queue and bookkeeping per task: the run's wall time minus every shard's time and the merge,
  divided by the tasks it sent (the fan-out, the shards, the merge);
- `m`: the merge (the job's end minus the last shard's).

N workers get the shards the audit's own `plan_shards` makes for N (so LIME stops at its 16 picked
images, and SIS and the spurious audit at their whole batches), dealt longest first; each shard costs
`q + f + c * units`, and the wall time is `q` (the fan-out) + the busiest worker + `m`. `--gpu-factor g` divides `c` (only `c`) by g: a GPU
runs the audit's forward passes faster but stages, loads and merges as a CPU does, so the fixed costs
weigh more. g is an assumption, not a measurement (no GPU was lent to the session that wrote this); the
table with g = 1 is what the measured costs say for CPU workers. `--units` runs the model for another
dataset size than the benchmark's (e.g. 500 images). Writes bench/results/scaling_simulation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORKERS = [1, 2, 4, 8, 16, 32, 64]


def costs(measured: dict[str, Any]) -> dict[str, float]:
    """The model's inputs from one audit's measured runs (see the module docstring)."""
    runs = measured["runs"]
    unsharded = next(r for r in runs if r["mode"] == "unsharded")
    one = next(r for r in runs if r["mode"] == "sharded" and r["workers"] == 1)
    items = one["shard_items"]
    compute = one["shard_compute_s"]
    fixed = [s + p for s, p in zip(one["shard_stage_s"], one["shard_prepare_s"], strict=True)]
    busy = sum(compute) + sum(fixed)
    merge = float(one["merge_s"] or 0.0)
    tasks = len(items) + 2
    return {
        "units": float(sum(items)),
        "c": sum(compute) / sum(items),
        "f": sum(fixed[1:]) / max(1, len(fixed) - 1) if len(fixed) > 1 else fixed[0],
        "f_first": fixed[0],
        "q": max(0.0, one["wall_s"] - busy - merge) / tasks,
        "m": merge,
        "unsharded_wall_s": float(unsharded["wall_s"]),
    }


def plan_sizes(audit: str, config: dict[str, Any], images: int, workers: int) -> list[int]:
    """The units of each shard the audit's own plan makes for `workers` workers (LIME cannot split
    its 16 picked images further than 16 ways, SIS and the spurious audit cut between whole batches)."""
    from auditors.registry import get_auditor, parse_config

    cfg = parse_config(audit, config)
    return [len(r) for r in get_auditor(audit).plan_shards(images, cfg, workers)]


def predict(k: dict[str, float], workers: int, sizes: list[int], gpu_factor: float) -> float:
    """Wall seconds: the plan's shards dealt to `workers` workers longest first, each shard paying
    the queue, its fixed cost and its compute; then the merge."""
    loads = [0.0] * workers
    for size in sorted(sizes, reverse=True):
        i = loads.index(min(loads))
        loads[i] += k["q"] + k["f"] + k["c"] / gpu_factor * size
    return k["q"] + max(loads) + (k["f_first"] - k["f"]) + k["m"]


def simulate(gpu_factor: float, units_override: int) -> dict[str, Any]:
    out: dict[str, Any] = {"gpu_factor": gpu_factor, "workers": WORKERS, "audits": {}}
    for path in sorted(RESULTS.glob("scaling_*.json")):
        if path.stem.startswith("scaling_simulation"):
            continue
        measured = json.loads(path.read_text())
        k = costs(measured)
        audit = str(measured["audit"])
        config = measured["config"][audit]
        images = int(units_override or measured["images"])
        plans = {n: plan_sizes(audit, config, images, n) for n in WORKERS}
        units = float(sum(plans[1]))
        base = predict(k, 1, plans[1], gpu_factor)
        walls = [predict(k, n, plans[n], gpu_factor) for n in WORKERS]
        check = next((r for r in measured["runs"] if r["mode"] == "sharded" and r["workers"] == 2), None)
        out["audits"][measured["audit"]] = {
            "costs": {key: round(v, 4) for key, v in k.items()},
            "units": units,
            "shards": [len(plans[n]) for n in WORKERS],
            "wall_s": [round(w, 2) for w in walls],
            "speedup": [round(base / w, 2) for w in walls],
            "efficiency": [round(base / w / n, 2) for w, n in zip(walls, WORKERS, strict=True)],
            # The model against a measured run it was not fitted to (2 workers on 2 cores).
            "check_2_workers": None
            if check is None or units_override or gpu_factor != 1
            else {"measured_s": check["wall_s"], "predicted_s": round(walls[1], 2)},
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    g = result["gpu_factor"]
    lines = [
        f"### Simulated workers, audit compute / {g:g}" if g != 1 else "### Simulated CPU workers",
        "",
        "| audit | units | c (s/unit) | f (s) | q (s) | m (s) | "
        + " | ".join(f"N={n}" for n in result["workers"])
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(result["workers"]),
    ]
    lines[0] += " (cells: wall time, speed-up over one worker, shards)"
    for name, a in result["audits"].items():
        k = a["costs"]
        cells = " | ".join(
            f"{w:.1f} s ({s:.1f}x, {k_})"
            for w, s, k_ in zip(a["wall_s"], a["speedup"], a["shards"], strict=True)
        )
        lines.append(
            f"| {name} | {a['units']:.0f} | {k['c'] / g:.3g} | {k['f']:.2f} | {k['q']:.2f} | "
            f"{k['m']:.2f} | {cells} |"
        )
    checks = [
        f"{name}: measured {a['check_2_workers']['measured_s']:.1f} s, predicted "
        f"{a['check_2_workers']['predicted_s']:.1f} s"
        for name, a in result["audits"].items()
        if a["check_2_workers"]
    ]
    if checks:
        lines += ["", "Model check, 2 workers on 2 cores: " + "; ".join(checks) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-factor", type=float, nargs="+", default=[1.0, 50.0])
    parser.add_argument("--units", type=int, default=0, help="simulate this many units instead")
    args = parser.parse_args()
    results = [simulate(g, args.units) for g in args.gpu_factor]
    text = "\n".join(markdown(r) for r in results)
    print(text)
    suffix = f"_{args.units}" if args.units else ""
    (RESULTS / f"scaling_simulation{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"scaling_simulation{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
