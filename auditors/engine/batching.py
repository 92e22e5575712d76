"""Batches that fit the device: sized from free memory and the activation size measured on a first
batch, and halved when the GPU runs out of memory anyway, so an audit never fails from memory alone.

Why both: the measured size is an estimate (the allocator fragments, another process on the card
takes memory, an audit holds tensors of its own), and ablation batches of a few thousand images of a
ViT-L at 224 px fit one card and not the next. On `torch.cuda.OutOfMemoryError` the chunk is halved,
the cache emptied and the same rows computed again; results do not depend on the chunking (fills are
seeded per sample), so the answer is the one an unconstrained run gives. The smaller size is kept for
the rest of the process (later calls start from it), and every halving is recorded as an event the
runner writes into the report's environment. Only a batch of one that does not fit is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

# (model id, per-sample shape, strategy, device) -> chunk size: measured on CUDA, lowered on OOM.
ChunkKey = tuple[int, tuple[int, ...], str, str]
_CHUNKS: dict[ChunkKey, int] = {}
# (model id, device) -> the largest batch known to fit after an out-of-memory error.
_CAPS: dict[tuple[int, str], int] = {}
_EVENTS: list[str] = []
MAX_CHUNK = 8192
FREE_SHARE = 0.6  # of the free memory a chunk may use: room for the allocator and the audit's own tensors
PROBE = 8


def drain_events() -> list[str]:
    """The halvings since the last call (the runner reads them once per run), oldest first."""
    events = list(_EVENTS)
    _EVENTS.clear()
    return events


def record(event: str) -> None:
    """Note a memory event for the report (the runner's CPU fallback records its own)."""
    log.warning(event)
    _EVENTS.append(event)


def cap(model: torch.nn.Module, device: torch.device, chunk: int) -> int:
    """`chunk`, lowered to what an earlier out-of-memory error taught for this model and device."""
    return min(chunk, _CAPS.get((id(model), str(device)), chunk))


def run_chunks(
    model: torch.nn.Module, device: torch.device, n: int, chunk: int, step: Callable[[int, int], None]
) -> None:
    """Call `step(start, stop)` over `range(n)` in chunks; on out-of-memory halve and redo that chunk."""
    chunk = max(1, cap(model, device, chunk))
    start = 0
    while start < n:
        stop = min(n, start + chunk)
        try:
            step(start, stop)
        except torch.cuda.OutOfMemoryError:
            size = stop - start
            if size <= 1:
                raise
            chunk = max(1, size // 2)
            _halved(model, device, size, chunk)
            continue
        start = stop


def _halved(model: torch.nn.Module, device: torch.device, size: int, chunk: int) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    key = (id(model), str(device))
    _CAPS[key] = min(chunk, _CAPS.get(key, chunk))
    for k, v in list(_CHUNKS.items()):
        if k[0] == key[0] and k[3] == key[1] and v > chunk:
            _CHUNKS[k] = chunk
    record(f"out of memory at a batch of {size} on {device}; continued at {chunk}")


def auto_chunk(
    model: torch.nn.Module,
    shape: tuple[int, ...],
    strategy: str,
    device: torch.device,
    probe: Callable[[int], None],
) -> int:
    """The chunk for `shape` [B,3,H,W]: on CUDA the free memory over the peak activation per sample of
    a first batch (`probe(batch)` runs one forward), measured once per model, shape and strategy."""
    h, w = shape[-2:]
    if device.type != "cuda":
        # Small enough to stay in cache, large enough to amortise Python overhead.
        return cap(model, device, int(max(8, min(512, 2**21 // (h * w)))))
    key = (id(model), tuple(shape[1:]), strategy, str(device))
    if key in _CHUNKS:
        return cap(model, device, _CHUNKS[key])
    batch = PROBE
    while True:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        try:
            probe(batch)
            break
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            _halved(model, device, batch, batch // 2)
            batch //= 2
    per_sample = max((torch.cuda.max_memory_allocated(device) - base) / batch, 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    chunk = int(max(1, min(MAX_CHUNK, FREE_SHARE * free / per_sample)))
    _CHUNKS[key] = chunk
    return cap(model, device, chunk)
