"""Speed of LIME (ours vs Captum's `Lime`, same model, fill and samples) and of exact BackSelect.

    PYTHONPATH=. python bench/lime_sis.py [--quick] [--device cpu|cuda] [--arch occulta_resnet_tiny]

Prints a table and writes bench/results/lime_sis.json. Captum gets the same perturbation count,
grid features, black fill, cosine kernel (width 0.25) and a closed-form ridge (alpha=1) fitted per
image on the host, which is what a scikit-learn-backed Captum run does; scikit-learn itself is not
needed. Exact BackSelect on 32x32 is timed over its first steps (the widest batches) and reported as
forward passes per second, plus the projected time of a whole image (524,800 passes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import timm
import torch

import auditors.zoo.architectures  # noqa: F401  (registers the tiny archs)
from auditors.engine import prepare_model
from auditors.methods.backselect import backselect
from auditors.methods.lime import lime_fit
from bench.common import captum_lime_seconds, sync

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def ours_lime_seconds(model: torch.nn.Module, images: torch.Tensor, patch: int, n_samples: int) -> float:
    lime_fit(
        model, images[:1], mean=MEAN, std=STD, strategy="black", patch_size=patch, n_samples=64
    )  # warm-up
    device = next(model.parameters()).device
    sync(device)
    t0 = time.perf_counter()
    lime_fit(model, images, mean=MEAN, std=STD, strategy="black", patch_size=patch, n_samples=n_samples)
    sync(device)
    return (time.perf_counter() - t0) / images.shape[0]


class _StopBenchError(Exception):
    """Ends a BackSelect run after the timed steps."""


def backselect_passes_per_second(
    model: torch.nn.Module, size: int, steps: int, device: str
) -> dict[str, Any]:
    image = torch.rand(1, 3, size, size)
    n = size * size
    done = {"steps": 0}

    def stop_after(i: int, _n: int) -> None:
        done["steps"] = i
        if i >= steps:
            raise _StopBenchError

    t0 = time.perf_counter()
    with contextlib.suppress(_StopBenchError):
        backselect(model, image, mean=MEAN, std=STD, progress=stop_after)
    sync(torch.device(device))
    dt = time.perf_counter() - t0
    passes = sum(n - s for s in range(done["steps"]))
    total = n * (n + 1) // 2
    return {
        "image": f"{size}x{size}",
        "steps_timed": done["steps"],
        "forward_passes": passes,
        "seconds": dt,
        "passes_per_second": passes / dt,
        "projected_seconds_per_image": total / (passes / dt),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and steps: under 2 minutes on a CPU")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="occulta_resnet_tiny")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--out", default="bench/results/lime_sis.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    kw = {"img_size": args.size} if "vit" in args.arch else {}
    model = prepare_model(timm.create_model(args.arch, num_classes=10, **kw), args.device)
    n_images = 4 if args.quick else 16
    images = torch.rand(n_images, 3, args.size, args.size)
    ours = ours_lime_seconds(model, images, args.patch, args.n_samples)
    n_captum = 2 if args.quick else 4
    captum = captum_lime_seconds(
        model,
        images[:n_captum],
        args.patch,
        args.n_samples,
        min(args.n_samples, 512),
        mean=MEAN,
        std=STD,
    )
    bs = backselect_passes_per_second(model, 32, 8 if args.quick else 64, args.device)
    result = {
        "device": args.device,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "arch": args.arch,
        "image_size": args.size,
        "features": (args.size // args.patch) ** 2,
        "n_samples": args.n_samples,
        "strategy": "black",
        "lime": {
            "ours_seconds_per_image": ours,
            "ours_images": n_images,
            "captum_seconds_per_image": captum,
            "captum_images": n_captum,
            "speedup": captum / ours,
        },
        "backselect_exact": bs,
    }
    print(f"{'':34s}{'s/image':>10s}")
    print(f"{'LIME ours (batched engine + fit)':34s}{ours:10.3f}")
    print(f"{'LIME Captum Lime':34s}{captum:10.3f}")
    print(f"{'speedup (Captum / ours)':34s}{captum / ours:10.2f}x")
    print(
        f"exact BackSelect 32x32: {bs['passes_per_second']:.0f} forward passes/s "
        f"({bs['steps_timed']} steps timed; whole image ~{bs['projected_seconds_per_image']:.0f} s)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
