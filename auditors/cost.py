"""What an audit battery costs before it runs: forward passes per audit, then seconds on this device.

Each audit's cost is a count of images sent through the model, split by kind: `forward` (inference,
batched by the engine), `gradient` (forward + backward, for saliency and gradient BackSelect) and
`calls` (model invocations, each with a fixed overhead that dominates small models on a GPU), plus
`figures` (report plots, which cost as much as the model work of a tiny model on a CPU). The
counts follow each audit's code path from its config and the run's shape, so they need no torch and
the API can compute them in a request. Seconds come from a short `calibrate` of the actual model at
its input size and of one plot: seconds = forward x t_forward + gradient x t_gradient + calls x
t_call + figures x t_figure.

Each audit counts its own passes (`Audit.forward_passes`, beside the code that makes them); counts
that depend on the data (how many discovery candidates survive, how many images a class has) take
their upper bound, so the estimate errs long. An audit that does not say is reported without a count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from auditors.audits.info import AuditConfig
from auditors.passes import Passes, RunShape
from auditors.registry import get_auditor


def forward_passes(name: str, config: AuditConfig, shape: RunShape) -> Passes | None:
    """The audit's own count (`Audit.forward_passes`); None for an audit that does not say."""
    return get_auditor(name).forward_passes(config, shape)


@dataclass(frozen=True)
class Calibration:
    """Measured seconds per image (forward; forward + backward) and per model call, on one device."""

    device: str
    forward_s: float  # a pixel-fill masked forward (the plain one is a little cheaper)
    native_s: float  # the model's native strategy; = forward_s for a model without one
    gradient_s: float
    call_s: float
    figure_s: float
    batch: int
    seconds: float  # what the calibration itself took

    def seconds_for(self, p: Passes) -> float:
        return (
            p.forward * self.forward_s
            + p.native * self.native_s
            + p.gradient * self.gradient_s
            + p.calls * self.call_s
            + p.figures * self.figure_s
        )


@dataclass
class Estimate:
    """Per-audit passes and seconds; `seconds` is None without a calibration."""

    audits: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float | None = None
    calibration: Calibration | None = None
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "audits": self.audits,
            "forward_passes": sum(a["forward_passes"] or 0 for a in self.audits.values()),
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "calibration": None
            if cal is None
            else {
                "device": cal.device,
                "forward_ms_per_image": round(cal.forward_s * 1e3, 4),
                "native_ms_per_image": round(cal.native_s * 1e3, 4),
                "gradient_ms_per_image": round(cal.gradient_s * 1e3, 4),
                "call_ms": round(cal.call_s * 1e3, 4),
                "figure_ms": round(cal.figure_s * 1e3, 1),
                "batch": cal.batch,
            },
            "changes": self.changes,
        }


def estimate(configs: dict[str, AuditConfig], shape: RunShape, calibration: Calibration | None) -> Estimate:
    out = Estimate(calibration=calibration)
    total = 0.0
    for name, cfg in configs.items():
        p = forward_passes(name, cfg, shape)
        secs = None if p is None or calibration is None else calibration.seconds_for(p)
        out.audits[name] = {
            "forward_passes": None if p is None else p.total,
            "gradient_passes": None if p is None else p.gradient,
            "seconds": None if secs is None else round(secs, 2),
        }
        total += secs or 0.0
    out.seconds = total if calibration is not None else None
    return out


def calibrate(model: Any, height: int, width: int, *, target_s: float = 0.25) -> Calibration:
    """Time the model at its input size: batch 1 (call overhead), a pixel-fill masked batch of about
    `target_s` seconds, the native strategy, and forward + backward (saliency's path). A few seconds
    at most, even for a ResNet-50 on a CPU."""
    import torch

    from auditors.engine import (
        autocast,
        masked_logits,
        model_device,
        model_family,
        native_strategy,
        vit_patch_size,
    )

    t_start = time.perf_counter()
    device = model_device(model)
    cuda = device.type == "cuda"
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    family = model_family(model)
    native = native_strategy(model)
    p = vit_patch_size(model) if family == "vit" else (16 if min(height, width) >= 224 else 8)
    grid = (height // p, width // p) if height % p == 0 and width % p == 0 else (height, width)
    gen = torch.Generator().manual_seed(0)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def run(n: int, strategy: str, warm: int, repeat: int = 1) -> float:
        """Best of `repeat` timings of a masked batch of `n` (a shared machine is noisy)."""
        x = torch.rand(n, 3, height, width, device=device)
        keep = torch.rand(n, *grid, generator=gen) < 0.5
        kw: dict[str, Any] = dict(mean=mean, std=std, chunk_size=n)
        masked_logits(model, x[:warm], keep[:warm], strategy, **kw)  # warm-up
        best = math.inf
        for _ in range(repeat):
            sync()
            t = time.perf_counter()
            masked_logits(model, x, keep, strategy, **kw)
            sync()
            best = min(best, time.perf_counter() - t)
        return best

    t1 = run(1, "black", 1, repeat=3)
    cap = 256 if cuda else 64
    batch = int(min(cap, max(4, target_s / max(t1, 1e-6))))
    forward_s = run(batch, "black", batch, repeat=2) / batch
    call_s = max(0.0, t1 - forward_s)
    # Per-image costs net of the call overhead, which `calls` counts separately.
    small = max(2, batch // 2)
    native_s = max(forward_s, (run(small, native, 1) - call_s) / small) if native else forward_s
    x = torch.rand(small, 3, height, width, device=device, requires_grad=True)

    def grad() -> None:
        with torch.enable_grad(), autocast(device):
            torch.autograd.grad(model(x).float().logsumexp(1).sum(), x)
        sync()

    grad()
    t = time.perf_counter()
    grad()
    gradient_s = max(forward_s, (time.perf_counter() - t - call_s) / small)
    return Calibration(
        str(device),
        forward_s,
        native_s,
        gradient_s,
        call_s,
        figure_seconds(),
        batch,
        time.perf_counter() - t_start,
    )


def figure_seconds() -> float:
    """Seconds to render one report plot (the second of two: the first pays for imports)."""
    import tempfile
    from pathlib import Path

    from auditors.audits import plots

    with tempfile.TemporaryDirectory(prefix="occulta-cal-") as tmp:
        took = 0.0
        for i in range(2):
            t = time.perf_counter()
            plots.line_plot(
                Path(tmp) / f"{i}.png",
                [0.0, 0.5, 1.0],
                {"a": [1.0, 0.5, 0.2], "b": [0.9, 0.6, 0.1]},
                title="calibration",
                xlabel="x",
                ylabel="y",
            )
            took = time.perf_counter() - t
    return took


# Knobs a budget may shrink, per audit: (config field, floor). Largest-cost audit shrinks first.
BUDGET_KNOBS: dict[str, list[tuple[str, int]]] = {
    "lime_consistency": [("n_samples", 100), ("n_images", 2)],
    "sis": [("n_images", 1)],
    "spurious_signal": [("n_images", 16), ("steps", 8), ("n_samples", 4)],
}


def fit_budget(
    configs: dict[str, AuditConfig], shape: RunShape, calibration: Calibration, budget_s: float
) -> tuple[dict[str, AuditConfig], int, list[str]]:
    """Shrink sample sizes until the estimate fits `budget_s`: (configs, images to keep, changes).

    Each round takes the costliest audit and shrinks by 30% its first knob still above its floor,
    then the run's images (which every audit sees), down to 16. Changes read `audit.knob: old -> new`.
    Stops when nothing is left to shrink, so a budget below the floors is exceeded, and says so.
    """
    cfgs = {k: v.model_copy() for k, v in configs.items()}
    n = shape.n_images
    first: dict[str, Any] = {}
    for _ in range(500):
        est = estimate(cfgs, replace(shape, n_images=n), calibration)
        if est.seconds is None or est.seconds <= budget_s:
            break
        moved = False
        for name in sorted(est.audits, key=lambda a: -(est.audits[a]["seconds"] or 0.0)):
            for knob, floor in BUDGET_KNOBS.get(name, []):
                value = getattr(cfgs[name], knob)
                if value > floor:
                    first.setdefault(f"{name}.{knob}", value)
                    cfgs[name] = cfgs[name].model_copy(update={knob: max(floor, int(value * 0.7))})
                    moved = True
                    break
            if not moved and n > 16:
                first.setdefault("images", n)
                n = max(16, int(n * 0.7))
                moved = True
            if moved:
                break
        if not moved:
            break
    changes = []
    for key, old in first.items():
        audit, _, knob = key.partition(".")
        new = n if key == "images" else getattr(cfgs[audit], knob)
        changes.append(f"{key}: {old} -> {new}")
    return cfgs, n, changes
