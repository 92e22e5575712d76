"""One shard of the SIS audit: the pick from the whole sample, then BackSelect for some positions of it.

Every shard makes the same pick (the clean predictions of all images, the confident ones, a
class-stratified draw) and the same fully-masked check over the whole pick, then explains only the
positions of its range. An image's numbers must not depend on its shard: its random draws are keyed
by its position in the pick, and every forward batch has the same number of rows (`batch_rows`,
padded with copies), so no float depends on which other images share a batch. The partial is plain
JSON: per-image lists, the settings the merge checks, and the few pictures the artifacts draw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from auditors.audits.base import LegacyPartial
from auditors.audits.context import AuditContext
from auditors.audits.partials import pack_arrays
from auditors.audits.sis.config import (
    PICK_SALT,
    RANDOM_SALT,
    SISConfig,
    batch_rows,
    choose_method,
    resolution_pct,
)
from auditors.audits.sis.controls import random_subsets, retrain_on_subsets
from auditors.engine import masked_logits, parse_strategy, plain_logits
from auditors.methods.backselect import (
    BackSelectResult,
    backselect,
    backselect_subset,
    gradient_backselect,
    sis_from_order,
    subset_keep,
)
from auditors.sampling import counts_per_class, stratified_among


@dataclass(frozen=True)
class Pick:
    """The confident images SIS explains, the same in every shard: dataset indices in pick order, the
    clean prediction and its probability (from one pass over the whole sample), labels if any."""

    index: np.ndarray
    target: torch.Tensor
    f_full: torch.Tensor
    labels: torch.Tensor | None
    selection: dict[str, Any]


def make_pick(ctx: AuditContext, cfg: SISConfig, seed: int, method: str) -> Pick:
    """The confident images of every class (an SIS exists only where f >= tau), not a prefix."""
    probs_all = torch.softmax(plain_logits(ctx.model, ctx.images, mean=ctx.mean, std=ctx.std).float(), 1)
    f_all, pred_all = (t.cpu().numpy() for t in probs_all.max(1))
    groups = ctx.labels.cpu().numpy() if ctx.labels is not None else pred_all
    eligible = f_all >= cfg.tau
    index = stratified_among(groups, eligible, cfg.n_images, seed=seed, salt=PICK_SALT)
    h, w = ctx.image_size
    selection = {
        "n_candidates": int(f_all.size),
        "n_confident": int(eligible.sum()),
        "n_confident_per_class": _per_class(ctx, groups, np.flatnonzero(eligible)),
        "n_per_class": _per_class(ctx, groups, index),
        "resolution_pct": resolution_pct(method, h * w, cfg.gradient_k),
    }
    chosen = torch.from_numpy(index)
    labels = ctx.labels.cpu()[chosen] if ctx.labels is not None else None
    return Pick(index, torch.from_numpy(pred_all)[chosen], torch.from_numpy(f_all)[chosen], labels, selection)


def _per_class(ctx: AuditContext, groups: np.ndarray, index: np.ndarray) -> dict[str, int]:
    counts = counts_per_class(groups, index, len(ctx.class_names))
    return dict(zip(ctx.class_names, counts, strict=True))


def _chunks(positions: range, rows: int) -> list[range]:
    return [range(s, min(s + rows, positions.stop)) for s in range(positions.start, positions.stop, rows)]


def _pad(x: torch.Tensor, rows: int) -> torch.Tensor:
    """`x` with its last row repeated up to `rows` rows: every batch has the same shape."""
    return torch.cat([x, x[-1:].expand(rows - len(x), *x.shape[1:])]) if len(x) < rows else x


def _target_probs(
    ctx: AuditContext,
    images: torch.Tensor,
    keep: torch.Tensor,
    target: torch.Tensor,
    cfg: SISConfig,
    seed: int,
    start: int,
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities [n,K] of images seen through `keep`, and those of `target`, computed in
    one batch of exactly `rows` rows; position `start + i` keys image i's random fill."""
    n = len(images)
    logits = masked_logits(
        ctx.model,
        _pad(images, rows),
        _pad(keep, rows),
        cfg.strategy,
        mean=ctx.mean,
        std=ctx.std,
        seed=seed,
        offset=start,
    )
    probs = torch.softmax(logits.float(), 1).cpu()[:n]
    return probs, probs.gather(1, target.view(-1, 1)).squeeze(1)


def _backselect(
    ctx: AuditContext,
    images: torch.Tensor,
    target: torch.Tensor,
    f_full: torch.Tensor,
    cfg: SISConfig,
    method: str,
    seed: int,
    start: int,
    rows: int,
    progress: Callable[[int, int], None],
) -> BackSelectResult:
    """BackSelect for positions start.. of the pick: exact one image at a time (its candidate batches
    depend only on itself), gradient in one padded batch. f(x) is the pick's, so every picked image is
    confident by the same number that picked it."""
    kw: dict[str, Any] = dict(mean=ctx.mean, std=ctx.std, strategy=cfg.strategy, seed=seed)
    n = len(images)
    if method == "exact":
        parts = []
        for i in range(n):
            parts.append(
                backselect(
                    ctx.model,
                    images[i : i + 1],
                    target=target[i : i + 1],
                    offset=start + i,
                    progress=None,
                    **kw,
                )
            )
            progress(i + 1, n)
        order = torch.cat([p.order.cpu() for p in parts])
        f_after = torch.cat([p.f_after.cpu() for p in parts])
    else:
        res = gradient_backselect(
            ctx.model,
            _pad(images, rows),
            target=_pad(target, rows),
            k=cfg.gradient_k,
            batch_size=rows,
            offset=start,
            **kw,
        )
        order, f_after = res.order.cpu()[:n], res.f_after.cpu()[:n]
        progress(n, n)
    return BackSelectResult(order, f_after, f_full, target, method)


def run_shard(ctx: AuditContext, cfg: SISConfig, positions: range) -> LegacyPartial:
    """The partial for positions `positions` of the pick (empty where they lie beyond it)."""
    t0 = time.perf_counter()
    if positions.step != 1 or positions.start < 0 or positions.stop <= positions.start:
        raise ValueError(f"shard {positions} is not a non-empty contiguous range of pick positions")
    if ctx.image_offset:
        raise ValueError("an SIS shard needs the whole sample: it picks its images from all of them")
    if not parse_strategy(cfg.strategy).is_pixel_fill:
        raise ValueError(f"SIS masks single pixels with a fill value; {cfg.strategy} is not a pixel fill")
    seed = ctx.seed_for(cfg)
    h, w = ctx.image_size
    method = choose_method(cfg, h * w, ctx.device.type == "cuda")
    pick = make_pick(ctx, cfg, seed, method)
    n_pick = int(pick.index.size)
    own = range(min(positions.start, n_pick), min(positions.stop, n_pick))
    part: dict[str, Any] = {
        "start": positions.start,
        "stop": positions.stop,
        "seed": seed,
        "method": method,
        "strategy": cfg.strategy,
        "height": h,
        "width": w,
        "n_pick": n_pick,
        "selection": pick.selection,
        "skipped": False,
        "labels": None if pick.labels is None else pick.labels[own.start : own.stop].tolist(),
        "clean": pick.target[own.start : own.stop].tolist(),
        "f_full": pick.f_full[own.start : own.stop].tolist(),
        "f_masked": [],
        "sis_size": [],
        "sufficiency": [],
        "subsets": {s: {"pred": [], "confidence": [], "target_prob": []} for s in ("backselect", "random")},
        "show": [],
        "retrain": None,
    }
    if n_pick == 0:
        return _done(part, t0)
    images = ctx.images[torch.from_numpy(pick.index)].cpu()
    rows = batch_rows(n_pick, cfg.batch_rows)
    # docs/audits.md, "SIS and overinterpretation": first check that the fully masked input is well
    # below tau, over the whole pick so that every shard decides alike.
    none_kept = torch.zeros(rows, h, w, dtype=torch.bool)
    f_masked = torch.cat(
        [
            _target_probs(
                ctx,
                images[c.start : c.stop],
                none_kept[: len(c)],
                pick.target[c.start : c.stop],
                cfg,
                seed,
                c.start,
                rows,
            )[1]
            for c in _chunks(range(n_pick), rows)
        ]
    )
    part["f_masked"] = f_masked[own.start : own.stop].tolist()
    if float((f_masked >= cfg.tau).float().mean()) > 0.5:
        part["skipped"] = True
        return _done(part, t0)
    ctx.report(0.0, f"{method} BackSelect on {len(own)} of {n_pick} images")
    shown: list[tuple[float, int, torch.Tensor, torch.Tensor]] = []
    for c in _chunks(own, rows):
        shown += _explain(ctx, cfg, part, images[c.start : c.stop], pick, c, method, seed, rows, own)
    shown.sort(key=lambda s: (s[0], s[1]))
    part["show"] = [
        {
            "position": p,
            "arrays": pack_arrays(
                {
                    "image": np.round(images[p].float().clamp(0, 1).numpy() * 255).astype(np.uint8),
                    "sis": sis.numpy().astype(np.int32),
                    "subset": sub.numpy().astype(np.int32),
                }
            ),
        }
        for _, p, sis, sub in shown[: cfg.n_show]
    ]
    if cfg.retrain_on_subsets and positions.start == 0:  # one shard retrains, on the whole sample
        ctx.report(0.9, "retraining on 5% subsets")
        part["retrain"] = retrain_on_subsets(
            ctx,
            cfg.retrain_images,
            cfg.gradient_k,
            cfg.strategy,
            cfg.subset_fraction,
            cfg.retrain_epochs,
            seed,
        )
    return _done(part, t0)


def _explain(
    ctx: AuditContext,
    cfg: SISConfig,
    part: dict[str, Any],
    images: torch.Tensor,
    pick: Pick,
    c: range,
    method: str,
    seed: int,
    rows: int,
    own: range,
) -> list[tuple[float, int, torch.Tensor, torch.Tensor]]:
    """BackSelect, sufficiency and the 5% subsets of positions `c`, appended to `part`'s lists; returns
    the (SIS %, position, SIS, 5% subset) of the images that have an SIS, for the pictures."""
    h, w = ctx.image_size
    n_px = h * w
    target, f_full = pick.target[c.start : c.stop], pick.f_full[c.start : c.stop]
    done = c.start - own.start

    def progress(i: int, n: int) -> None:
        ctx.report(0.8 * (done + i) / len(own), f"BackSelect {done + i}/{len(own)}")

    res = _backselect(ctx, images, target, f_full, cfg, method, seed, c.start, rows, progress)
    sis = sis_from_order(res, cfg.tau)
    part["sis_size"] += [None if s is None else len(s) for s in sis]
    # Sufficiency is re-checked through the engine: the SIS alone must keep f >= tau.
    full = torch.ones(h, w, dtype=torch.bool)
    keep = torch.stack([subset_keep([s], h, w)[0] if s is not None and len(s) else full for s in sis])
    _, f_sis = _target_probs(ctx, images, keep, target, cfg, seed, c.start, rows)
    part["sufficiency"] += [
        float(f) if s is not None and len(s) else None for f, s in zip(f_sis.tolist(), sis, strict=True)
    ]
    ctx.report(0.85 * (done + len(c)) / len(own), "5% subsets")
    bs_sub = backselect_subset(res, cfg.subset_fraction)
    rnd_sub = random_subsets(c, n_px, len(bs_sub[0]), seed=seed, salt=RANDOM_SALT)
    for name, subs in (("backselect", bs_sub), ("random", rnd_sub)):
        probs, f_t = _target_probs(ctx, images, subset_keep(subs, h, w), target, cfg, seed, c.start, rows)
        out = part["subsets"][name]
        out["pred"] += probs.argmax(1).tolist()
        out["confidence"] += probs.amax(1).tolist()
        out["target_prob"] += f_t.tolist()
    return [
        (100.0 * len(s) / n_px, c.start + i, s.cpu(), bs_sub[i].cpu())
        for i, s in enumerate(sis)
        if s is not None
    ]


def _done(part: dict[str, Any], t0: float) -> LegacyPartial:
    part["seconds"] = round(time.perf_counter() - t0, 3)
    return part
