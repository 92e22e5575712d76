"""Cost of native missingness per model family, measured side by side with the plain forward pass.

    python -m bench.engine_families [--device cpu|cuda] [--batch 8] [--repeat 3] [--models resnet50 ...]

For each family users bring (random weights, 1000 classes, 224 px), the time of `masked_logits` with
the family's native strategy (`layer_mask` or `token_drop`, about half the 16-px patches removed) over
the time of `plain_logits` on the same batch, chunking and precision: a ratio above 1 is the price of
not painting the removed patches. The two are timed alternately, each after a warm-up, and the best
of `--repeat` runs of each counts.

Prints a table and writes bench/results/engine_families.json. On a shared CPU only the ratios mean
anything; absolute images per second need a quiet machine or a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import timm
import torch

from auditors.engine import masked_logits, model_family, native_strategy, plain_logits, prepare_model
from bench.engine import MEAN, STD

MODELS = (
    "resnet50",
    "vit_small_patch16_224",
    "deit_small_distilled_patch16_224",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenetv3_large_100",
    "regnety_008",
    "swin_tiny_patch4_window7_224",
)


def measure(name: str, device: torch.device, batch: int, repeat: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = prepare_model(timm.create_model(name, pretrained=False, num_classes=1000), device)
    strategy = native_strategy(model)
    if strategy is None:
        raise SystemExit(f"{name} has no native strategy")
    images = torch.rand(batch, 3, 224, 224, device=device)
    keep = torch.rand(batch, 14, 14, generator=torch.Generator().manual_seed(0)) > 0.5

    def plain() -> object:
        return plain_logits(model, images, mean=MEAN, std=STD, chunk_size=batch)

    def masked() -> object:
        return masked_logits(model, images, keep, strategy, mean=MEAN, std=STD, chunk_size=batch)

    # Alternate the two, best of `repeat` each, so drifting load on a shared machine hits both alike.
    plain(), masked()  # warm-up
    best = {plain: float("inf"), masked: float("inf")}
    for _ in range(repeat):
        for fn in best:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[fn] = min(best[fn], time.perf_counter() - t)
    plain_s, masked_s = best[plain], best[masked]
    return {
        "model": name,
        "family": model_family(model),
        "strategy": strategy,
        "plain_s": plain_s,
        "masked_s": masked_s,
        "ratio": masked_s / plain_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine_families.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = [measure(name, device, args.batch, args.repeat) for name in args.models]
    cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    result = {
        "device": f"{device.type} ({device_name})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "batch": args.batch,
        "image_size": 224,
        "removed": "about half of the 14x14 patches, at random",
        "dtype": "bfloat16 + channels_last" if cuda else "float32",
        "rows": rows,
    }
    print(f"\nnative missingness vs plain forward, batch {args.batch} at 224 px on {result['device']}")
    print(f"{'model':34s}{'family':>14s}{'strategy':>12s}{'plain s':>10s}{'masked s':>10s}{'ratio':>8s}")
    for r in rows:
        print(
            f"{r['model']:34s}{r['family']:>14s}{r['strategy']:>12s}"
            f"{r['plain_s']:10.3f}{r['masked_s']:10.3f}{r['ratio']:8.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
