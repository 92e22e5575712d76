"""Opt-in `torch.compile` for the engine's forward passes, with CUDA graphs where shapes are static.

The model is compiled in place (`nn.Module.compile`), so it keeps its class: `model_family`,
`applicable_strategies` and the native strategies still recognise a timm ResNet or ViT. The plain
forward and every pixel fill go through the compiled `__call__`; token dropping and layer masking
call the model's submodules themselves and stay eager.

Shapes are compiled statically (`dynamic=False`): the engine's chunks all have one size except the
last, so a run costs one compilation per distinct batch shape. CUDA graphs (`mode="reduce-overhead"`)
replay a recorded kernel sequence per shape; they only pay off where the same shape repeats
(throughput runs, LIME, missingness sweeps), never for exact BackSelect's shrinking batches.
"""

from __future__ import annotations

import shutil

import torch
from torch import nn

from auditors.engine.errors import EngineError


def compile_unavailable(device: torch.device | str, *, cuda_graphs: bool = False) -> str | None:
    """Why `compile_model` cannot run here, or None when it can."""
    device = torch.device(device)
    if cuda_graphs and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if device.type == "cpu" and shutil.which("cc") is None and shutil.which("gcc") is None:
        return "torch.compile on the CPU needs a C compiler (cc/gcc) and none is on PATH"
    return None


def compile_model(model: nn.Module, *, cuda_graphs: bool = False, backend: str = "inductor") -> nn.Module:
    """Compile `model`'s forward in place and return it (the same object, the same class).

    `cuda_graphs` records CUDA graphs per static shape (CUDA only); `backend` is torch.compile's
    (`"eager"` traces without generating code: a cheap check that the model compiles at all).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    reason = compile_unavailable(device, cuda_graphs=cuda_graphs)
    if reason is not None:
        raise EngineError(f"cannot compile: {reason}")
    if cuda_graphs and backend != "inductor":
        raise EngineError(f"CUDA graphs come from the inductor backend, not {backend!r}")
    model.compile(backend=backend, mode="reduce-overhead" if cuda_graphs else None, dynamic=False)
    return model


def is_compiled(model: nn.Module) -> bool:
    """Whether `compile_model` (or `nn.Module.compile`) was applied to this model."""
    return getattr(model, "_compiled_call_impl", None) is not None
