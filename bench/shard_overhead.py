"""What does a shard cost before it computes anything? The same shards run two ways, side by side:

- fresh: each shard in a new Python process (what `worker_max_tasks_per_child=1` did): import torch,
  build and load the model, load the shard's images, run the shard;
- reused: all shards in one process with the per-process model cache (`worker.models`, what a worker
  child does now): torch imported and the model loaded once.

    python -m bench.shard_overhead [--shards 6] [--images 32]

CPU, `OMP_NUM_THREADS=1`, occulta_resnet_tiny with fixed random weights, a missingness audit with one
strategy at two fractions, so a shard's compute is small and its fixed cost shows. Each fresh shard is
timed from process spawn to exit; reused shards are timed inside the process. Prints a table and writes
bench/results/shard_overhead.json. No database, broker or network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scaling import _make_model

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"strategies": ["black"], "fractions": [0.0, 0.5]}
DATA = "synthetic:shapes?classes=4&size=32&n={n}&seed=1"


def run_shards(card: Path, n_images: int, shards: list[int], reuse: bool) -> list[float]:
    """Run the given shard indices in this process; seconds per shard."""
    from auditors.registry import get_auditor, parse_config
    from occulta.runner import load_prepared, prepare_run
    from worker.models import cached_loader

    loader = cached_loader("mdl_bench:sha") if reuse else load_prepared
    auditor = get_auditor("missingness_bias")
    config = parse_config("missingness_bias", CONFIG)
    times = []
    for index in shards:
        t0 = time.perf_counter()
        indices = range(index * n_images, (index + 1) * n_images)
        with tempfile.TemporaryDirectory() as tmp:
            prepared = prepare_run(
                card_path=card,
                data_ref=DATA.format(n=n_images * (max(shards) + 1)),
                out_dir=Path(tmp),
                device="cpu",
                indices=indices,
                model_loader=loader,
            )
            auditor.run_shard(prepared.ctx, config, indices)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--images", type=int, default=32, help="images per shard")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # card, images, shard index
    args = parser.parse_args()
    if args.child:
        run_shards(Path(args.child[0]), int(args.child[1]), [int(args.child[2])], reuse=False)
        return
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _make_model(folder)
        card = folder / "card.json"
        os.environ |= {"OCCULTA_DATA_DIR": str(folder / "data"), "OCCULTA_DEVICE": "cpu"}
        env |= {"OCCULTA_DATA_DIR": str(folder / "data"), "OCCULTA_DEVICE": "cpu"}
        fresh = []
        for index in range(args.shards):
            t0 = time.perf_counter()
            cmd = [
                sys.executable,
                "-m",
                "bench.shard_overhead",
                "--child",
                str(card),
                str(args.images),
                str(index),
            ]
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)
            fresh.append(time.perf_counter() - t0)
        reused = run_shards(card, args.images, list(range(args.shards)), reuse=True)
    warm = reused[1:] or reused
    out = {
        "shards": args.shards,
        "images_per_shard": args.images,
        "fresh_process_s": [round(t, 3) for t in fresh],
        "reused_process_s": [round(t, 3) for t in reused],
        "fresh_mean_s": round(sum(fresh) / len(fresh), 3),
        "reused_mean_after_first_s": round(sum(warm) / len(warm), 3),
        "ratio_fresh_to_reused": round((sum(fresh) / len(fresh)) / (sum(warm) / len(warm)), 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_average": os.getloadavg(),
    }
    print(f"{'shard':>5} {'fresh process (s)':>18} {'reused process (s)':>19}")
    for i, (f, r) in enumerate(zip(fresh, reused, strict=True)):
        print(f"{i:>5} {f:>18.2f} {r:>19.2f}")
    print(
        f"mean fresh {out['fresh_mean_s']} s, reused after the first {out['reused_mean_after_first_s']} s: "
        f"{out['ratio_fresh_to_reused']}x"
    )
    path = ROOT / "bench" / "results" / "shard_overhead.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
