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

import numpy as np
import timm
import torch
from torch.utils.data import DataLoader

import auditors.zoo.architectures  # noqa: F401  (registers the tiny archs)
from auditors.engine import normalize, plain_logits, prepare_model
from auditors.methods.backselect import backselect
from auditors.methods.lime import grid_segments, lime_fit

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class ClosedFormRidge:
    """Captum `Model` interface: weighted ridge (alpha=1, unpenalised intercept) solved with numpy."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.coef = torch.zeros(0)

    def fit(self, train_data: DataLoader, **kwargs: object) -> None:
        xs, ys, ws = [], [], []
        for x, y, w in train_data:
            xs.append(x.double().numpy())
            ys.append(y.double().numpy().reshape(-1))
            ws.append(w.double().numpy().reshape(-1))
        x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
        xa = np.hstack([x, np.ones((len(x), 1))])
        pen = self.alpha * np.eye(xa.shape[1])
        pen[-1, -1] = 0
        beta = np.linalg.solve(xa.T @ (w[:, None] * xa) + pen, xa.T @ (w * y))
        self.coef = torch.from_numpy(beta[:-1]).float().view(1, -1)

    def representation(self) -> torch.Tensor:
        return self.coef

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.coef.T


def captum_lime_seconds(model: torch.nn.Module, images: torch.Tensor, patch: int, n_samples: int) -> float:
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    device = next(model.parameters()).device
    mean_t, std_t = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(normalize(x, mean_t, std_t)), 1)

    lime = Lime(
        forward,
        interpretable_model=ClosedFormRidge(1.0),  # type: ignore[arg-type]
        similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.25),
    )
    h, w = images.shape[-2:]
    mask = grid_segments(h, w, patch)[0].to(device).view(1, 1, h, w)
    target = plain_logits(model, images, mean=MEAN, std=STD).argmax(1)
    t0 = time.perf_counter()
    for i in range(images.shape[0]):
        lime.attribute(
            images[i : i + 1].to(device),
            baselines=0.0,
            target=int(target[i]),
            feature_mask=mask,
            n_samples=n_samples,
            perturbations_per_eval=min(n_samples, 512),
        )
    _sync(device)
    return (time.perf_counter() - t0) / images.shape[0]


def ours_lime_seconds(model: torch.nn.Module, images: torch.Tensor, patch: int, n_samples: int) -> float:
    lime_fit(
        model, images[:1], mean=MEAN, std=STD, strategy="black", patch_size=patch, n_samples=64
    )  # warm-up
    device = next(model.parameters()).device
    _sync(device)
    t0 = time.perf_counter()
    lime_fit(model, images, mean=MEAN, std=STD, strategy="black", patch_size=patch, n_samples=n_samples)
    _sync(device)
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
    _sync(torch.device(device))
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    captum = captum_lime_seconds(model, images[:n_captum], args.patch, args.n_samples)
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
