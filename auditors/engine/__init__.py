"""The missingness engine: what does the model say when part of the input is missing?

Every audit asks this thousands of times, so one function answers it for all of them::

    masked_logits(model, images, keep, strategy, mean=..., std=...) -> Tensor[B, K]

`images` is float [B,3,H,W] in [0,1] pixel space (B may be 1 and is then shared by every ablation,
without copying); `keep` is bool [B,h,w] on a patch grid or [B,H,W] per pixel. Strategies are the
pixel fills of `fills.py` and one native strategy per model family, so that a removed region is absent
rather than painted (each proven by the identities in tests/unit/test_engine*.py: nothing removed ==
the plain forward; removed pixels cannot change the output):

- `token_drop` (`token_drop.py`): timm ViT-likes with global attention (ViT, DeiT incl. distilled,
  DeiT III, CLIP ViTs, register tokens, EVA/EVA-02 with rotary embeddings) drop the removed tokens
  from the sequence; BEiT (`beit.py`) masks them out of attention under its relative position bias;
  Swin (`swin.py`) masks them out of its windowed attention and merges patches over kept tokens only;
- `layer_mask` (`layer_mask.py`): ResNet, EfficientNet, MobileNetV3 and RegNet carry the mask through
  every layer (neighbour-filled convolutions, squeeze-excitation and pooling over visible positions);
  ConvNeXt V1/V2 (`convnext.py`) uses sparse, masked depthwise convolutions with the GRN over kept
  positions. Any layer a walker does not know is refused with its module path.
Work is chunked to fit the device; masks stay on the device; CUDA runs bf16 autocast and channels-last,
the CPU runs fp32. Results come back in the order asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import cast

import torch
from torch import nn

from auditors.engine.errors import EngineError
from auditors.engine.fills import (
    NATIVE,
    PIXEL_FILLS,
    Strategy,
    apply_pixel_fill,
    gaussian_blur,
    parse_strategy,
)
from auditors.engine.layer_mask import check_layer_mask, layer_mask_family, layer_mask_logits
from auditors.engine.token_drop import (
    check_token_drop,
    token_drop_family,
    token_drop_logits,
    vit_patch_size,
)
from auditors.families import Family

__all__ = [
    "NATIVE",
    "PIXEL_FILLS",
    "EngineError",
    "Strategy",
    "applicable_strategies",
    "apply_pixel_fill",
    "autocast",
    "gaussian_blur",
    "masked_logits",
    "model_device",
    "model_family",
    "native_strategy",
    "normalize",
    "parse_strategy",
    "pixel_keep",
    "plain_logits",
    "prepare_model",
    "vit_patch_size",
]

Progress = Callable[[int, int], None]


def model_family(model: nn.Module) -> Family:
    """The model's family, which decides its native missingness: vit/swin -> token_drop, the CNN
    families -> layer_mask, other -> pixel fills only. ("vit" also means "has a ViT patch grid".)
    `auditors.families` states the same from the architecture name; tests/unit/test_families.py
    checks that the two agree on every family."""
    fam = token_drop_family(model) or layer_mask_family(model) or "other"
    return cast(Family, fam)


def native_strategy(model: nn.Module) -> str | None:
    """The model's native strategy, or None when its family has none or a layer is not handled."""
    fam = model_family(model)
    if fam == "other":
        return None
    strategy, check = (
        ("token_drop", check_token_drop) if fam in ("vit", "swin") else ("layer_mask", check_layer_mask)
    )
    try:
        check(model)
    except EngineError:
        return None
    return strategy


def applicable_strategies(model: nn.Module) -> list[str]:
    """Every strategy that applies to this model: all pixel fills, plus its native one if any."""
    native = native_strategy(model)
    return [*PIXEL_FILLS, *([native] if native else [])]


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def prepare_model(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Eval mode on `device`; channels-last on CUDA (faster convolutions with bf16)."""
    device = torch.device(device)
    model = model.eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device) -> torch.autocast | nullcontext[None]:
    """bf16 on CUDA, plain fp32 elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def pixel_keep(keep: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Expand a patch-grid keep mask [B,h,w] to pixels [B,H,W] (identity if already per pixel)."""
    if keep.dim() != 3:
        raise EngineError(f"keep must be [B,h,w] or [B,H,W]; got shape {tuple(keep.shape)}")
    h, w = keep.shape[1:]
    if (h, w) == (height, width):
        return keep
    if height % h or width % w or height // h != width // w:
        raise EngineError(f"keep grid {h}x{w} does not tile a {height}x{width} image into square patches")
    p = height // h
    return keep.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2)


_CHUNK_CACHE: dict[tuple[int, tuple[int, ...], str, str], int] = {}


def _auto_chunk(model: nn.Module, shape: tuple[int, ...], strategy: Strategy, device: torch.device) -> int:
    h, w = shape[-2:]
    if device.type != "cuda":
        # Small enough to stay in cache, large enough to amortise Python overhead.
        return int(max(8, min(512, 2**21 // (h * w))))
    key = (id(model), tuple(shape), strategy.name, str(device))
    if key in _CHUNK_CACHE:
        return _CHUNK_CACHE[key]
    # Probe the peak memory of a small batch, then size chunks to ~60% of what is free.
    probe = 8
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = torch.rand(probe, *shape[1:], device=device)
    keep = torch.ones(probe, h, w, dtype=torch.bool, device=device)
    _forward(model, x, keep, strategy, torch.zeros(3, device=device), torch.ones(3, device=device), 0, 0)
    per_sample = max((torch.cuda.max_memory_allocated(device) - base) / probe, 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    chunk = int(max(1, min(8192, 0.6 * free / per_sample)))
    _CHUNK_CACHE[key] = chunk
    return chunk


def _forward(
    model: nn.Module,
    images: torch.Tensor,
    keep_px: torch.Tensor,
    strategy: Strategy,
    mean: torch.Tensor,
    std: torch.Tensor,
    seed: int,
    offset: int,
) -> torch.Tensor:
    device = images.device
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device):
        if strategy.name == "token_drop":
            return token_drop_logits(model, normalize(images, mean, std), keep_px)
        if strategy.name == "layer_mask":
            return layer_mask_logits(model, normalize(images, mean, std), keep_px)
        mixed = apply_pixel_fill(strategy, images, keep_px.unsqueeze(1), mean=mean, seed=seed, offset=offset)
        return cast(torch.Tensor, model(normalize(mixed, mean, std)))


def _check_strategy(model: nn.Module, strategy: Strategy, images: torch.Tensor) -> None:
    if strategy.name == "token_drop":
        check_token_drop(model)
        p = vit_patch_size(model)
        if images.shape[-1] % p or images.shape[-2] % p:
            raise EngineError(
                f"token_drop: image size {tuple(images.shape[-2:])} is not a multiple of patch {p}"
            )
    elif strategy.name == "layer_mask":
        check_layer_mask(model)


def masked_logits(
    model: nn.Module,
    images: torch.Tensor,
    keep: torch.Tensor,
    strategy: str | Strategy,
    *,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    patch_size: int | None = None,
    seed: int = 0,
    offset: int = 0,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Logits [B,K] (float32, on the model's device) for each image seen through its `keep` mask.

    `patch_size`, when given, is checked against the grid `keep` implies; the grid is otherwise
    inferred from the image size. Random fills (`noise`, `random_color`) are reproducible per
    `seed` and per sample, whatever the chunking; `offset` is the index of row 0 in the caller's
    numbering (e.g. a shard's first image), so a sample's fill does not depend on which shard it is in.
    """
    strat = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy)
    if images.dim() != 4 or images.shape[1] != 3:
        raise EngineError(f"images must be [B,3,H,W]; got {tuple(images.shape)}")
    if keep.dtype != torch.bool:
        raise EngineError(f"keep must be a bool tensor; got {keep.dtype}")
    n = keep.shape[0]
    if images.shape[0] not in (1, n):
        raise EngineError(f"images has {images.shape[0]} rows but keep has {n}; use 1 image or one per mask")
    height, width = images.shape[-2:]
    if patch_size is not None and keep.shape[1:] != (height, width):
        expected = (height // patch_size, width // patch_size)
        if tuple(keep.shape[1:]) != expected:
            raise EngineError(f"keep grid {tuple(keep.shape[1:])} does not match patch_size {patch_size}")
    _check_strategy(model, strat, images)
    device = model_device(model)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    keep_dev = keep.to(device, non_blocking=True)
    shared = images.to(device, non_blocking=True) if images.shape[0] == 1 else None
    with torch.inference_mode():
        chunk = chunk_size or _auto_chunk(model, tuple(images.shape), strat, device)
        out: torch.Tensor | None = None
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            if shared is not None:
                imgs = shared.expand(stop - start, -1, -1, -1)
            else:
                imgs = images[start:stop].to(device, non_blocking=True)
            keep_px = pixel_keep(keep_dev[start:stop], height, width)
            logits = _forward(
                model, imgs.float(), keep_px, strat, mean_t, std_t, seed, offset + start
            ).float()
            if out is None:
                out = torch.empty(n, logits.shape[1], device=device)
            out[start:stop] = logits
            if progress is not None:
                progress(stop, n)
    if out is None:
        raise EngineError("keep is empty: nothing to evaluate")
    return out


def plain_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The unmasked forward pass, through the same chunking and precision as `masked_logits`."""
    device = model_device(model)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    n = images.shape[0]
    if n == 0:  # e.g. no recipient images for a test: [0, K], so callers need no special case
        blank = torch.zeros(1, *images.shape[1:], device=device)
        with torch.inference_mode(), autocast(device):
            return model(normalize(blank, mean_t, std_t)).float()[:0]
    chunk = chunk_size or _auto_chunk(model, tuple(images.shape), Strategy("black"), device)
    outs = []
    with torch.inference_mode():
        for start in range(0, n, chunk):
            x = images[start : start + chunk].to(device, non_blocking=True).float()
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                outs.append(model(normalize(x, mean_t, std_t)).float())
    return torch.cat(outs)
