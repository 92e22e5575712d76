"""Per-image saliency maps for the spurious-signal audit (docs/audits.md, "Spurious signals").

The gradient methods come from Captum, applied to a wrapper that normalises *after* the input, so
attributions live in [0,1] pixel space like every other audit:

- `gradient`: |∂f/∂x| max over channels (Simonyan et al., 2014), Captum `Saliency`.
- `gradient_squared`: Σ_c (∂f/∂x)², the map Adebayo et al. (2022) use for the watermark models.
- `smoothgrad`: |∂f/∂x| averaged over Gaussian-noised copies (Smilkov et al., 2017), Captum `Saliency`
  on copies noised per image (what `NoiseTunnel` does, but keyed per image so that a map does not
  depend on its batch); noise σ = `noise` × the [0,1] input range.
- `integrated_gradients`: Σ_c |IG| from the model's mean colour (0 after normalisation, the docs/audits.md
  "mean" baseline; Sundararajan et al., 2017), Captum `IntegratedGradients`.
- `occlusion`: the drop in the target's probability when a P×P box is removed, one box per pass.
  Written here rather than with Captum's `Occlusion`, because removal must go through the missingness
  engine (layer masking / token dropping / blur), which Captum's baseline substitution cannot express,
  and because the engine evaluates all of an image's boxes in one batched call.

`f` is the target class's logit, the target the model's clean prediction unless given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from auditors.engine import masked_logits, model_device, normalize, plain_logits
from auditors.engine.fills import sample_generator
from auditors.methods.catalog import SALIENCY_METHODS
from auditors.methods.per_image_random import per_image_uniform

METHODS = SALIENCY_METHODS


class SaliencyError(ValueError):
    """A saliency request that cannot be served (unknown method, bad shapes); the message says why."""


def _forward_func(
    model: nn.Module, mean: torch.Tensor, std: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(normalize(x, mean, std))
        return out

    return forward


def grid_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """[x, y, w, h] of every `window`-sized box on a `stride` grid that fits inside the image."""
    ys = range(0, height - window + 1, stride)
    xs = range(0, width - window + 1, stride)
    return [(x, y, window, window) for y in ys for x in xs]


def box_keep(
    boxes: Sequence[Sequence[int]], height: int, width: int, device: torch.device | None = None
) -> torch.Tensor:
    """Pixel keep masks [len(boxes),H,W]: False inside each box."""
    keep = torch.ones(len(boxes), height, width, dtype=torch.bool, device=device)
    for i, (x, y, w, h) in enumerate(boxes):
        keep[i, y : y + h, x : x + w] = False
    return keep


def occlusion_effects(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    boxes: Sequence[Sequence[int]],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategy: str,
    seed: int = 0,
    clean_probs: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Drop in p(target) [N, len(boxes)] when each box is removed from each image via the engine.

    One engine call per image: the image row is shared by all its box masks without copying. Image i's
    random fill is keyed by `seed + offset + i` (`offset`: the index of row 0 in the caller's numbering).
    """
    height, width = images.shape[-2:]
    device = model_device(model)
    keep = box_keep(boxes, height, width, device)
    if clean_probs is None:
        clean_probs = plain_logits(model, images, mean=mean, std=std).softmax(1)
    base = clean_probs.gather(1, targets.view(-1, 1).to(clean_probs.device)).to(device)
    out = torch.empty(images.shape[0], len(boxes), device=device)
    for i in range(images.shape[0]):
        probs = masked_logits(
            model, images[i : i + 1], keep, strategy, mean=mean, std=std, seed=seed + offset + i
        ).softmax(1)
        out[i] = base[i] - probs[:, int(targets[i])]
    return out


def saliency_maps(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    target: torch.Tensor | None = None,
    n_samples: int = 16,
    noise: float = 0.15,
    steps: int = 32,
    patch_size: int = 4,
    strategy: str = "mean",
    batch_size: int = 64,
    seed: int = 0,
    offset: int = 0,
) -> torch.Tensor:
    """Non-negative maps [N,H,W] (on the model's device) of where `model` looks for `target`.

    `n_samples` and `noise` are SmoothGrad's, `steps` IG's, `patch_size` and `strategy` occlusion's.
    Random draws (SmoothGrad noise, occlusion fills) are keyed per image by (`seed`, `offset` + row),
    so an image gets the same map whatever batch or shard it is computed in; the global RNG is untouched.
    """
    if method not in METHODS:
        raise SaliencyError(f"unknown saliency method {method!r}; available: {', '.join(METHODS)}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise SaliencyError(f"images must be [N,3,H,W]; got {tuple(images.shape)}")
    device = model_device(model)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    if target is None:
        target = plain_logits(model, images, mean=mean_t, std=std_t).argmax(1)
    target = target.to(device)
    height, width = images.shape[-2:]
    if method == "occlusion":
        boxes = grid_boxes(height, width, patch_size, patch_size)
        effects = occlusion_effects(
            model, images, target, boxes, mean=mean, std=std, strategy=strategy, seed=seed, offset=offset
        )
        gh, gw = height // patch_size, width // patch_size
        grid = effects.clamp_min(0).view(-1, gh, gw)
        return grid.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    from captum.attr import IntegratedGradients, Saliency

    forward = _forward_func(model, mean_t, std_t)
    maps = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device).float().requires_grad_()
            t = target[start : start + batch_size]
            if method in ("gradient", "gradient_squared"):
                g = Saliency(forward).attribute(x, target=t, abs=method == "gradient")
                m = g.amax(1) if method == "gradient" else g.pow(2).sum(1)
            elif method == "smoothgrad":
                m = _smoothgrad(forward, x, t, n_samples, noise, seed, offset + start)
            else:
                baseline = mean_t.view(1, 3, 1, 1).expand_as(x)
                ig = IntegratedGradients(forward)
                g = ig.attribute(
                    x, baselines=baseline, target=t, n_steps=steps, internal_batch_size=batch_size * 4
                )
                m = g.abs().sum(1)
            maps.append(m.detach())
    finally:
        model.train(was_training)
    return torch.cat(maps)


def _smoothgrad(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    n_samples: int,
    noise: float,
    seed: int,
    offset: int,
) -> torch.Tensor:
    """|∂f/∂x| averaged over `n_samples` noisy copies, max over channels; image i's noise comes from
    its own generator (`sample_generator(seed, offset + i)`), not from one draw over the batch."""
    from captum.attr import Saliency

    b = x.shape[0]
    eps = torch.stack(
        [
            torch.randn(
                n_samples,
                *x.shape[1:],
                generator=sample_generator(x.device, seed, offset + i),
                device=x.device,
            )
            for i in range(b)
        ]
    )
    noisy = (x.detach().unsqueeze(1) + noise * eps).flatten(0, 1).requires_grad_()
    g = Saliency(forward).attribute(noisy, target=target.repeat_interleave(n_samples), abs=True)
    return g.view(b, n_samples, *x.shape[1:]).mean(1).amax(1)


def top_q_mask(maps: torch.Tensor, q: float, seed: int = 0, offset: int = 0) -> tuple[torch.Tensor, int]:
    """Bool [N,H,W] marking each map's top-q pixels, and that count k = max(1, round(q·H·W)).

    Exact ties (occlusion maps are constant over a box) are broken at random, seeded per image (row i
    by `offset + i`), rather than by pixel order, which would always favour a box's top-left corner.
    """
    n, height, width = maps.shape
    k = max(1, round(q * height * width))
    flat = maps.reshape(n, -1).float()
    span = (flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True)).clamp_min(1e-12)
    draws = per_image_uniform(range(offset, offset + n), height * width, seed=seed, salt=0x7A9)
    jitter = torch.from_numpy(draws).float().to(flat.device) * span * 1e-6
    idx = (flat + jitter).topk(k, dim=1).indices
    mask = torch.zeros(n, height * width, dtype=torch.bool, device=maps.device)
    mask.scatter_(1, idx, True)
    return mask.view(n, height, width), k


def box_share(top: torch.Tensor, box: Sequence[int]) -> torch.Tensor:
    """Per image, the share [N] of the top pixels (a `top_q_mask`) that fall inside box [x,y,w,h]."""
    x, y, w, h = box
    inside = top[:, y : y + h, x : x + w].flatten(1).sum(1).float()
    return inside / top.flatten(1).sum(1).clamp_min(1).float()
