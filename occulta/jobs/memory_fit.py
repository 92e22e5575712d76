"""Refuse at submission a model that cannot run one forward pass on the workers' GPUs.

The adaptive batching (`auditors.engine.batching`) shrinks batches down to one image, so an audit
never fails from memory if a single forward fits; a model whose single forward does not is the one
case it cannot rescue, and without this check it would be accepted, wait its turn and fail later.

A lower bound is all the API can know without loading the model: the weights (stored fp32, on the
GPU as they are), their bf16 copies under autocast, and the CUDA context. The activations of one
image come on top, so a model refused here certainly does not fit; one accepted may still need the
batching's halving, which it has.
"""

from __future__ import annotations

from dataclasses import dataclass

from occulta.errors import AuditConfigError

GiB = 1024**3
CUDA_CONTEXT_BYTES = 512 * 1024**2  # the CUDA context and allocator reserve of a worker child
AUTOCAST_COPY = 0.5  # bf16 copies of the fp32 weights that autocast keeps during a forward


@dataclass(frozen=True)
class ModelFacts:
    """What the check reads from a model row (plain values, so they outlive the session)."""

    id: str
    arch: str
    size_bytes: int


def forward_floor(weights_bytes: int) -> int:
    """Bytes one forward needs at the least: weights, their bf16 copies, the CUDA context."""
    return int(weights_bytes * (1 + AUTOCAST_COPY)) + CUDA_CONTEXT_BYTES


def check_fits(model: ModelFacts, memory_gib: float | None) -> None:
    """Refuse the audit (422, with the figures) when the model's floor exceeds the workers' memory."""
    if memory_gib is None:
        return
    need = forward_floor(int(model.size_bytes))
    if need > memory_gib * GiB:
        raise AuditConfigError(
            f"model {model.id} ({model.arch}) needs at least {need / GiB:.1f} GiB of GPU memory for one "
            f"forward pass ({model.size_bytes / GiB:.1f} GiB of weights, their bf16 copies and the CUDA "
            f"context) but the workers' GPUs have {memory_gib:g} GiB (OCCULTA_WORKER_GPU_MEMORY_GIB); "
            "audit it on a fleet with larger GPUs, or a smaller variant of the model"
        )
