"""GPU performance of the engine and the audits, measured side by side in one run on one device.

    make bench-gpu                      # = python -m bench.gpu --device auto
    python -m bench.gpu --device cpu    # the same script at small sizes (tiny models, 56 px)
    python -m bench.gpu --tiny          # the smallest sizes: what the test suite runs

1. Forward passes: plain (eager; bf16 + channels-last on CUDA; `torch.compile`; compile + CUDA
   graphs on CUDA) vs masked (50% of patches removed) for every strategy, on a CNN and a ViT.
2. LIME-1000 per image (engine + batched ridge) vs Captum's `Lime` (default and
   `perturbations_per_eval=64`), same model, features, fill, kernel and ridge.
3. Occlusion over a 14 x 14 grid (196 windows) vs Captum's `Occlusion` (default and 64 per eval).
4. Token dropping at 50% of the tokens vs the plain ViT forward (batch 256 on CUDA).
5. Exact BackSelect on 32 x 32 (all 1024 steps on CUDA; projected from the first steps on a CPU).
6. The full battery on the CNN and the ViT: each audit's measured seconds next to its estimate
   (`auditors.cost`), the check that the estimate is within 2x.

On CUDA: ResNet-50 and ViT-S/16 at 224 px (random weights: speed does not depend on them) and the
issue's targets are checked; a CPU run keeps every code path tested, and only its ratios mean
anything. Writes bench/results/gpu.json (CUDA) or gpu_cpu.json (CPU) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

import auditors.zoo.architectures  # noqa: F401  (registers the tiny archs)
from auditors.audits.context import AuditContext
from auditors.cost import calibrate, estimate
from auditors.engine import (
    applicable_strategies,
    masked_logits,
    model_family,
    plain_logits,
    prepare_model,
    vit_patch_size,
)
from auditors.engine.compiled import compile_model, compile_unavailable
from auditors.methods.lime import lime_fit
from auditors.methods.saliency import grid_boxes, occlusion_effects
from auditors.passes import RunShape
from auditors.registry import get_auditor, parse_config
from bench.common import captum_lime_seconds, captum_occlusion_seconds, device_label, sync, timed
from bench.gpu_table import print_table, targets
from bench.lime_sis import backselect_passes_per_second

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BATTERY = ("missingness_bias", "lime_consistency", "sis", "spurious_signal")


@dataclass(frozen=True)
class Sizes:
    cnn: str
    vit: str
    size: int
    patch: int  # the CNN's patch grid (the ViT uses its own patch)
    classes: int
    throughput: int  # images per forward-throughput run
    lime_images: int
    lime_samples: int
    captum_images: int  # per Captum configuration
    occ_images: int
    token_batch: int
    backselect_steps: int  # 1024 = the whole 32 x 32 image
    battery_images: int
    repeat: int = 3
    compile_backend: str = "inductor"
    battery: dict[str, dict[str, Any]] = field(default_factory=dict)  # config overrides


SIZES = {
    "cuda": Sizes("resnet50", "vit_small_patch16_224", 224, 16, 1000, 1024, 8, 1000, 2, 32, 256, 1024, 500),
    "cpu": Sizes(
        "occulta_resnet_tiny",
        "occulta_vit_tiny",
        56,
        4,
        10,
        256,
        4,
        1000,
        1,
        8,
        64,
        8,
        32,
        repeat=2,
        battery={
            "lime_consistency": {"n_images": 4, "n_samples": 200},
            "sis": {"n_images": 2},
            "spurious_signal": {"n_images": 32, "steps": 8, "n_samples": 4},
        },
    ),
    "tiny": Sizes(
        "occulta_resnet_tiny",
        "occulta_vit_tiny",
        32,
        4,
        4,
        32,
        2,
        64,
        1,
        2,
        16,
        2,
        8,
        repeat=1,
        compile_backend="eager",
        battery={
            "missingness_bias": {"fractions": [0.0, 0.5]},
            "lime_consistency": {"n_images": 2, "n_samples": 32, "fills": ["black", "grey"]},
            "sis": {"n_images": 1, "method": "gradient", "gradient_k": 256},
            "spurious_signal": {"n_images": 8, "methods": ["gradient_squared"], "max_candidates": 1},
        },
    ),
}


def build(arch: str, sizes: Sizes, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    kw: dict[str, Any] = {"num_classes": sizes.classes}
    if "vit" in arch:
        kw["img_size"] = sizes.size
    return prepare_model(timm.create_model(arch, pretrained=False, **kw), device)


def model_patch(model: nn.Module, sizes: Sizes) -> int:
    return vit_patch_size(model) if model_family(model) == "vit" else sizes.patch


def half_keep(n: int, grid: int, seed: int = 0) -> torch.Tensor:
    """Keep masks [n,grid,grid] with exactly half of the patches removed."""
    order = torch.rand(n, grid * grid, generator=torch.Generator().manual_seed(seed)).argsort(1)
    keep = torch.ones(n, grid * grid, dtype=torch.bool)
    keep.scatter_(1, order[:, : grid * grid // 2], False)
    return keep.view(n, grid, grid)


def forward_rows(
    model: nn.Module, sizes: Sizes, device: torch.device, *, compiled_rows: bool = True
) -> dict[str, Any]:
    """Images/s of the plain and masked forward, eager and compiled, as ratios of the plain one."""
    n, size = sizes.throughput, sizes.size
    grid = size // model_patch(model, sizes)
    images = torch.rand(n, 3, size, size, device=device)
    keep = half_keep(n, grid)

    def plain(m: nn.Module) -> Callable[[], Any]:
        return lambda: plain_logits(m, images, mean=MEAN, std=STD, chunk_size=n)

    def masked(m: nn.Module, strat: str) -> Callable[[], Any]:
        return lambda: masked_logits(m, images, keep, strat, mean=MEAN, std=STD, chunk_size=n)

    eager_s = timed(plain(model), device, sizes.repeat)
    rows = [{"what": "plain, eager", "img_per_s": n / eager_s, "vs_plain_eager": 1.0}]
    for strat in applicable_strategies(model):
        s = timed(masked(model, strat), device, sizes.repeat)
        rows.append({"what": f"masked {strat}, eager", "img_per_s": n / s, "vs_plain_eager": eager_s / s})
    out: dict[str, Any] = {"rows": rows, "skipped": {}}
    variants = [("compiled", False), ("compiled + CUDA graphs", True)]
    for label, graphs in variants:
        reason = compile_unavailable(device, cuda_graphs=graphs) if compiled_rows else "--no-compile"
        if reason is not None:
            out["skipped"][label] = reason
            continue
        compiled = compile_model(copy.deepcopy(model), cuda_graphs=graphs, backend=sizes.compile_backend)
        t0 = time.perf_counter()
        plain(compiled)()
        sync(device)
        out.setdefault("compile_seconds", {})[label] = time.perf_counter() - t0
        plain_s = timed(plain(compiled), device, sizes.repeat, warmup=2 if graphs else 1)
        rows.append(
            {"what": f"plain, {label}", "img_per_s": n / plain_s, "vs_plain_eager": eager_s / plain_s}
        )
        for strat in ("black", "mean", "noise"):
            s = timed(masked(compiled, strat), device, sizes.repeat, warmup=2 if graphs else 1)
            rows.append(
                {
                    "what": f"masked {strat}, {label}",
                    "img_per_s": n / s,
                    "vs_plain_eager": eager_s / s,
                    "vs_plain_same_path": plain_s / s,
                }
            )
    if compiled_rows and sizes.compile_backend != "inductor":
        out["note"] = f"torch.compile backend {sizes.compile_backend!r}: traced, no generated code"
    return out


def lime_rows(model: nn.Module, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    patch = model_patch(model, sizes)
    images = torch.rand(max(sizes.lime_images, sizes.captum_images), 3, sizes.size, sizes.size)
    kw: dict[str, Any] = dict(mean=MEAN, std=STD, strategy="black", patch_size=patch)
    lime_fit(model, images[:1], n_samples=sizes.lime_samples, **kw)  # warm-up: chunk sizing
    sync(device)
    t0 = time.perf_counter()
    lime_fit(model, images[: sizes.lime_images], n_samples=sizes.lime_samples, **kw)
    sync(device)
    ours = (time.perf_counter() - t0) / sizes.lime_images
    out: dict[str, Any] = {
        "n_samples": sizes.lime_samples,
        "features": (sizes.size // patch) ** 2,
        "ours_seconds_per_image": ours,
    }
    for per_eval in (1, 64):
        s = captum_lime_seconds(
            model, images[: sizes.captum_images], patch, sizes.lime_samples, per_eval, mean=MEAN, std=STD
        )
        out[f"captum_per_eval_{per_eval}_seconds_per_image"] = s
        out[f"speedup_vs_captum_per_eval_{per_eval}"] = s / ours
    return out


def occlusion_rows(model: nn.Module, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    patch = sizes.patch if sizes.size % 14 else sizes.size // 14
    boxes = grid_boxes(sizes.size, sizes.size, patch, patch)
    images = torch.rand(max(sizes.occ_images, sizes.captum_images), 3, sizes.size, sizes.size, device=device)
    target = plain_logits(model, images, mean=MEAN, std=STD).argmax(1)

    def ours() -> Any:
        return occlusion_effects(
            model,
            images[: sizes.occ_images],
            target[: sizes.occ_images],
            boxes,
            mean=MEAN,
            std=STD,
            strategy="black",
        )

    s = timed(ours, device, sizes.repeat) / sizes.occ_images
    out: dict[str, Any] = {"windows": len(boxes), "window": patch, "ours_seconds_per_image": s}
    for per_eval in (1, 64):
        c = captum_occlusion_seconds(
            model, images[: sizes.captum_images], patch, per_eval, mean=MEAN, std=STD
        )
        out[f"captum_per_eval_{per_eval}_seconds_per_image"] = c
        out[f"speedup_vs_captum_per_eval_{per_eval}"] = c / s
    return out


def token_drop_rows(vit: nn.Module, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    n = sizes.token_batch
    images = torch.rand(n, 3, sizes.size, sizes.size, device=device)
    keep = half_keep(n, sizes.size // vit_patch_size(vit), seed=1)
    plain_s = timed(lambda: plain_logits(vit, images, mean=MEAN, std=STD, chunk_size=n), device, sizes.repeat)
    drop_s = timed(
        lambda: masked_logits(vit, images, keep, "token_drop", mean=MEAN, std=STD, chunk_size=n),
        device,
        sizes.repeat,
    )
    return {"batch": n, "kept": 0.5, "plain_s": plain_s, "token_drop_s": drop_s, "speedup": plain_s / drop_s}


def battery_rows(model: nn.Module, sizes: Sizes, device: torch.device, name: str) -> dict[str, Any]:
    """Each audit's measured seconds next to its estimate (passes from the config, a calibration)."""
    n, size = sizes.battery_images, sizes.size
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=gen)
    labels = torch.randint(0, sizes.classes, (n,), generator=gen)
    configs = {a: parse_config(a, sizes.battery.get(a)) for a in BATTERY}
    cal = calibrate(model, size, size)
    fam = model_family(model)
    shape = RunShape(
        n, size, size, sizes.classes, fam, vit_patch_size(model) if fam == "vit" else None, str(device)
    )
    est = estimate(configs, shape, cal)
    rows = []
    with tempfile.TemporaryDirectory(prefix="occulta-bench-") as tmp:
        ctx = AuditContext(
            model=model,
            images=images.to(device),
            labels=labels,
            mean=MEAN,
            std=STD,
            class_names=[f"class_{i}" for i in range(sizes.classes)],
            out_dir=Path(tmp),
        )
        for audit in BATTERY:
            sync(device)
            t0 = time.perf_counter()
            get_auditor(audit).run(ctx, configs[audit])
            sync(device)
            measured = time.perf_counter() - t0
            e = est.audits[audit]
            rows.append(
                {
                    "audit": audit,
                    "forward_passes": e["forward_passes"],
                    "estimate_s": e["seconds"],
                    "measured_s": round(measured, 3),
                    "ratio": round(e["seconds"] / measured, 3) if measured > 0 else None,
                }
            )
    total_m = sum(r["measured_s"] for r in rows)
    return {
        "model": name,
        "images": n,
        "image_size": size,
        "config_overrides": sizes.battery,
        "calibration_seconds": round(cal.seconds, 3),
        "audits": rows,
        "estimate_s": round(est.seconds or 0.0, 3),
        "measured_s": round(total_m, 3),
        "ratio": round((est.seconds or 0.0) / total_m, 3) if total_m > 0 else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--tiny", action="store_true", help="the smallest sizes (the test suite's run)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--out", type=Path, default=None, help="default: bench/results/gpu.json or gpu_cpu.json")
    args = ap.parse_args(argv)
    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(dev)
    cuda = device.type == "cuda"
    mode = "tiny" if args.tiny else ("cuda" if cuda else "cpu")
    sizes = SIZES[mode]
    t_start = time.perf_counter()
    cnn, vit = build(sizes.cnn, sizes, device), build(sizes.vit, sizes, device)
    forward: dict[str, Any] = {}
    for key, model in (("cnn", cnn), ("vit", vit)):
        fwd = forward_rows(model, sizes, device, compiled_rows=not args.no_compile)
        forward[key] = {"arch": sizes.cnn if key == "cnn" else sizes.vit, **fwd}
    small = build("occulta_resnet_tiny", Sizes(**{**asdict(sizes), "size": 32}), device)
    result: dict[str, Any] = {
        "device": device_label(device),
        "mode": mode,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "bfloat16 + channels_last" if cuda else "float32",
        "sizes": asdict(sizes),
        "forward": forward,
        "lime": lime_rows(cnn, sizes, device),
        "occlusion": occlusion_rows(cnn, sizes, device),
        "token_drop": token_drop_rows(vit, sizes, device),
        "backselect_exact": {
            "model": "occulta_resnet_tiny",
            **backselect_passes_per_second(small, 32, sizes.backselect_steps, dev),
        },
        "battery": [battery_rows(cnn, sizes, device, "cnn"), battery_rows(vit, sizes, device, "vit")],
    }
    result["targets"] = targets(result, cuda and mode == "cuda")
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    if not cuda:
        result["note"] = (
            "CPU run of the GPU benchmark at small sizes: only ratios mean anything; the absolute "
            "targets apply to a CUDA run at 224 px (make bench-gpu on a GPU machine)."
        )
    print_table(result)
    out = args.out or Path("bench/results") / ("gpu.json" if mode == "cuda" else "gpu_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
