"""Throughput of the missingness engine, measured side by side in one run.

    python -m bench.engine [--device cpu|cuda] [--arch occulta_resnet_tiny] [--size 32] [--quick]

1. Masked-forward throughput per strategy as a ratio of the plain forward pass (same model, same
   chunking and precision: bf16 + channels-last on CUDA, fp32 on CPU), 50% of patches removed.
2. 1000 random ablations of one image (a LIME-sized job) through `masked_logits`, vs Captum's `Lime`
   with the same model, fill (black, in pixel space), grid features and sample count, with its default
   `perturbations_per_eval=1` and with 64. Captum's time includes its per-image fit (closed-form ridge,
   as in bench/lime_sis.py); ours is the ablations only, so the ratio favours Captum slightly.

Prints a table and writes bench/results/engine.json. Absolute numbers mean something only on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch

import auditors.zoo.architectures  # noqa: F401
from auditors.engine import applicable_strategies, masked_logits, normalize, plain_logits, prepare_model
from auditors.methods.lime import grid_segments
from bench.lime_sis import ClosedFormRidge

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int) -> float:
    """Best wall time of `repeat` runs after one warm-up (the warm-up also sizes the chunks)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def captum_lime_seconds(
    model: torch.nn.Module, image: torch.Tensor, patch: int, n_samples: int, per_eval: int
) -> float:
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    device = image.device
    mean_t, std_t = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(model(normalize(x, mean_t, std_t)), 1)

    lime = Lime(
        forward,
        interpretable_model=ClosedFormRidge(1.0),  # type: ignore[arg-type]
        similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.25),
    )
    h, w = image.shape[-2:]
    mask = grid_segments(h, w, patch)[0].to(device).view(1, 1, h, w)
    target = int(forward(image).argmax(1))
    _sync(device)
    t = time.perf_counter()
    lime.attribute(
        image,
        target=target,
        baselines=0.0,
        feature_mask=mask,
        n_samples=n_samples,
        perturbations_per_eval=per_eval,
    )
    _sync(device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default=None, help="default: resnet50 on CUDA, occulta_resnet_tiny on CPU")
    ap.add_argument("--size", type=int, default=None, help="default: 224 on CUDA, 32 on CPU")
    ap.add_argument("--images", type=int, default=None, help="images per throughput run")
    ap.add_argument("--samples", type=int, default=1000, help="ablations of one image (LIME-sized)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats; skip Captum's per_eval=1 run")
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    arch = args.arch or ("resnet50" if cuda else "occulta_resnet_tiny")
    size = args.size or (224 if cuda else 32)
    n = args.images or (4096 if cuda else 1024)
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"num_classes": 1000 if cuda else 10}
    if "vit" in arch:
        kwargs["img_size"] = size
    model = prepare_model(timm.create_model(arch, pretrained=False, **kwargs), device)
    patch = 16 if size >= 224 else max(1, size // 8)
    grid = size // patch
    images = torch.rand(n, 3, size, size, device=device)
    keep = torch.rand(n, grid, grid, generator=torch.Generator().manual_seed(0)) > 0.5
    repeat = 2 if args.quick else 3

    plain_s = timed(lambda: plain_logits(model, images, mean=MEAN, std=STD), device, repeat)
    rows: list[dict[str, Any]] = [{"what": "plain forward", "img_per_s": n / plain_s, "ratio": 1.0}]
    for strat in applicable_strategies(model):
        s = timed(
            lambda strat=strat: masked_logits(model, images, keep, strat, mean=MEAN, std=STD), device, repeat
        )
        rows.append({"what": f"masked: {strat}", "img_per_s": n / s, "ratio": plain_s / s})

    one = images[:1]
    lime_keep = torch.rand(args.samples, grid, grid, generator=torch.Generator().manual_seed(1)) > 0.5
    ours = timed(lambda: masked_logits(model, one, lime_keep, "black", mean=MEAN, std=STD), device, repeat)
    lime_rows = [{"what": f"{args.samples} ablations of one image: occulta engine", "seconds": ours}]
    for per_eval in [64] if args.quick else [1, 64]:
        s = captum_lime_seconds(model, one, patch, args.samples, per_eval)
        lime_rows.append(
            {
                "what": f"Captum Lime, perturbations_per_eval={per_eval}",
                "seconds": s,
                "speedup_ours": s / ours,
            }
        )

    device_name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    result = {
        "device": f"{device.type} ({device_name})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "arch": arch,
        "image_size": size,
        "patch_size": patch,
        "images": n,
        "dtype": "bfloat16 + channels_last" if cuda else "float32",
        "throughput": rows,
        "lime_sized": lime_rows,
    }
    print(f"\n{arch} {size}x{size} on {result['device']}, {result['dtype']}, {n} images, 50% patches removed")
    print(f"{'':44s}{'img/s':>12s}{'vs plain':>10s}")
    for r in rows:
        print(f"{r['what']:44s}{r['img_per_s']:12.0f}{r['ratio']:10.2f}")
    print(f"\n{'':52s}{'seconds':>10s}{'ours x':>9s}")
    for r in lime_rows:
        sp = f"{r['speedup_ours']:9.1f}" if "speedup_ours" in r else ""
        print(f"{r['what']:52s}{r['seconds']:10.3f}{sp}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
