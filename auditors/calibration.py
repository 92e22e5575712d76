"""Measuring a model's cost on its device: seconds per image forward, per forward + backward, per model
call and per report plot, for `auditors.cost.Calibration`. Torch work (a few batched passes of the
actual model at its input size), so it lives apart from the torch-free estimator."""

from __future__ import annotations

import math
import time
from typing import Any

from auditors.cost import Calibration


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
