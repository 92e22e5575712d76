"""Findings of discovery, in the report's contract: sentences, statistics and example images.

A confirmed local shortcut is a `spurious_region` finding (class, box [x, y, w, h] in model-input
pixels); a confirmed colour cast is a `global_shortcut` finding whose box is the whole image. Evidence
carries every number behind the verdict (flip and removal as estimates with n, interval and corrected
p-value, the candidate count and the correction) and a few example images for people: the mark on
real images of its class, other classes' images before and after stamping, and the class's images with
the box removed.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditors.audits.spurious_signal.nulls import Box, Probe, paste_each
from auditors.report import Finding

ArtifactPath = Callable[[str], tuple[Path, str]]  # file name -> (absolute path, path relative to report)
N_EXAMPLES = 3


def num(value: float, digits: int = 2) -> str:
    """`value` with `digits` decimals, never "-0.00": a tiny negative effect reads as zero."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def pct(value: float) -> str:
    return f"{round(100 * value)}%"


def _pixels(image: torch.Tensor) -> np.ndarray:
    """[H,W,3] uint8 of a [3,H,W] image in [0,1], as the example PNGs store it."""
    return (image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _png(path: Path, arr: np.ndarray, box: list[int] | None, scale: int = 4) -> None:
    from PIL import Image, ImageDraw

    img = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.Resampling.NEAREST)
    if box is not None:
        x, y, w, h = box
        ImageDraw.Draw(img).rectangle(
            [x * scale - 1, y * scale - 1, (x + w) * scale, (y + h) * scale], outline=(255, 0, 0), width=2
        )
    img.save(path)


def _true(labels: torch.Tensor | None, i: int, class_names: list[str]) -> str | None:
    """Image `i`'s true class name, when the dataset has labels."""
    return class_names[int(labels[i])] if labels is not None else None


def _example(
    suffix: str,
    image: torch.Tensor,
    box: list[int] | None,
    role: str,
    true: str | None,
    before: torch.Tensor,
    after: torch.Tensor,
    class_names: list[str],
) -> dict[str, Any]:
    arr = _pixels(image)
    b, a = int(before.argmax()), int(after.argmax())
    return {
        "suffix": suffix,
        "box": box,
        "shape": list(arr.shape),
        "pixels": base64.b64encode(zlib.compress(arr.tobytes())).decode("ascii"),
        "role": role,
        "true": true,
        "pred_before": class_names[b],
        "conf_before": round(float(before[b]), 4),
        "pred_after": class_names[a],
        "conf_after": round(float(after[a]), 4),
    }


def _mark_examples(
    probe: Probe,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    carriers: list[tuple[int, Box]],
    recipients: list[tuple[int, Box]],
    mark: tuple[torch.Tensor, torch.Tensor],
    stamped_probs: torch.Tensor,
    class_names: list[str],
) -> list[dict[str, Any]]:
    """Up to `N_EXAMPLES` (image, box) per role, as JSON: the class's carriers as they are
    (`in_class`) and with the box removed (`removed`), other classes' images with the mark (`rgb`,
    `alpha`) stamped at their box (`stamped`, after-probabilities from the stamp test)."""
    out: list[dict[str, Any]] = []
    if carriers:
        idx, boxes = [i for i, _ in carriers], [b for _, b in carriers]
        x = images[idx]
        probs = probe.probs(x)
        keep = torch.ones(len(idx), *x.shape[-2:], dtype=torch.bool, device=x.device)
        grey = x.clone()
        for j, (bx, by, bw, bh) in enumerate(boxes):
            keep[j, by : by + bh, bx : bx + bw] = False
            grey[j, :, by : by + bh, bx : bx + bw] = 0.5
        removed = probe.removed_probs(x, keep)
        for j, i in enumerate(idx):
            t, b = _true(labels, i, class_names), list(boxes[j])
            out.append(_example(f"in_class_{j}", x[j], b, "in_class", t, probs[j], probs[j], class_names))
            out.append(_example(f"removed_{j}", grey[j], b, "removed", t, probs[j], removed[j], class_names))
    if recipients:
        idx, boxes = [i for i, _ in recipients], [b for _, b in recipients]
        x = images[idx]
        before = probe.probs(x)
        stamped = paste_each(x, boxes, *mark)
        for j, i in enumerate(idx):
            t, b = _true(labels, i, class_names), list(boxes[j])
            out.append(
                _example(
                    f"stamped_{j}", stamped[j], b, "stamped", t, before[j], stamped_probs[j], class_names
                )
            )
    return out


def example_data(
    probe: Probe,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    sig: Any,
    stamp: dict[str, Any],
    class_names: list[str],
) -> list[dict[str, Any]]:
    """The examples of a fixed mark (a content `Signature`) and its stamp test, as JSON: the model work
    happens where the images are (a shard), the files are written by `draw_examples`."""
    box = tuple(sig.box)
    carriers = [(i, box) for i in sig.carriers.nonzero().flatten()[:N_EXAMPLES].tolist()]
    recipients = [(i, box) for i in stamp["recipients"][:N_EXAMPLES].tolist()]
    return _mark_examples(
        probe, images, labels, carriers, recipients, (sig.rgb, sig.alpha), stamp["stamped_probs"], class_names
    )


def pattern_example_data(
    probe: Probe,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    pattern: torch.Tensor,
    carriers: list[int],
    recipients: list[int],
    class_names: list[str],
) -> list[dict[str, Any]]:
    """Examples of a shared whole-image pattern, as JSON like `example_data`: the pattern itself,
    stretched to the full grey range so it can be seen (`pattern`), carriers of the class with it taken
    off (`removed`), and other classes' images with it added (`stamped`)."""
    p = pattern.to(images.device)
    scale = float(p.abs().max()) or 1.0
    shown = (0.5 + 0.5 * p / scale).clamp(0, 1)
    one = probe.probs(shown[None])[0]
    out = [_example("pattern", shown, None, "pattern", None, one, one, class_names)]

    for role, picked, sign in (("removed", carriers, -1.0), ("stamped", recipients, 1.0)):
        if not picked:
            continue
        x = images[picked[:N_EXAMPLES]]
        edited = (x + sign * p).clamp(0, 1)
        before, after = probe.probs(x), probe.probs(edited)
        for j, i in enumerate(picked[:N_EXAMPLES]):
            out.append(
                _example(
                    f"{role}_{j}",
                    edited[j],
                    None,
                    role,
                    _true(labels, i, class_names),
                    before[j],
                    after[j],
                    class_names,
                )
            )
    return out


def moving_example_data(
    probe: Probe,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    motif: Any,
    stamp: dict[str, Any],
    class_names: list[str],
) -> list[dict[str, Any]]:
    """`example_data` for a mark that moves (`motif.Motif`): each image with the mark's box at its own
    place."""
    carriers = list(zip(motif.carriers.nonzero().flatten().tolist(), motif.boxes(), strict=True))[:N_EXAMPLES]
    recipients = list(zip(stamp["recipients"].tolist(), stamp["boxes"], strict=True))[:N_EXAMPLES]
    return _mark_examples(
        probe,
        images,
        labels,
        carriers,
        recipients,
        (motif.rgb, motif.alpha),
        stamp["stamped_probs"],
        class_names,
    )


def located_example_data(
    probe: Probe,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    box: Box,
    carriers: list[int],
    recipients: list[int],
    class_names: list[str],
    *,
    seed: int,
) -> list[dict[str, Any]]:
    """`example_data` for a mark the model's gradients located (`located`): its colours differ per
    carrier, so each stamped example receives the box's pixels of one carrier, as the test did."""
    x, y, w, h = box
    rec = recipients[:N_EXAMPLES]
    gen = torch.Generator().manual_seed(seed)
    donors = [carriers[int(k)] for k in torch.randint(len(carriers), (len(rec),), generator=gen)]
    rgb = images[donors][:, :, y : y + h, x : x + w]
    alpha = torch.ones(h, w, dtype=torch.bool)
    stamped = probe.probs(paste_each(images[rec], [box] * len(rec), rgb, alpha)) if rec else None
    return _mark_examples(
        probe,
        images,
        labels,
        [(i, box) for i in carriers[:N_EXAMPLES]],
        [(i, box) for i in rec],
        (rgb, alpha),
        stamped if stamped is not None else torch.empty(0),
        class_names,
    )


def example_entries(rel: Callable[[str], str], tag: str, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's example list for `example_data`: each image's recorded path (`rel` of its file
    name `{tag}_{suffix}.png`) and what the model said before and after."""
    return [
        {"image": rel(f"{tag}_{e['suffix']}.png")}
        | {k: e[k] for k in ("role", "true", "pred_before", "conf_before")}
        | {k: e[k] for k in ("pred_after", "conf_after")}
        for e in data
    ]


def draw_examples(write: ArtifactPath, tag: str, data: list[dict[str, Any]]) -> None:
    """Write the example PNGs of `example_data` as `{tag}_{suffix}.png`."""
    for e in data:
        path, _ = write(f"{tag}_{e['suffix']}.png")
        arr = np.frombuffer(zlib.decompress(base64.b64decode(e["pixels"])), dtype=np.uint8)
        _png(path, arr.reshape(e["shape"]), e["box"])


def _estimate(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {k: d[k] for k in ("value", "lo", "hi", "n", "p_value", "null_mean") if k in d}


def local_finding(
    cand: dict[str, Any], example_list: list[dict[str, Any]], name: str | None = None
) -> Finding:
    """The `spurious_region` finding of a confirmed candidate, or of a hinted region called `name`."""
    cls, box, flip, null = cand["class"], cand["box"], cand["flip"], cand["null_flip"]
    placement = cand.get("placement", "fixed")
    if name:
        what = f"the hinted region {name!r}"
    elif placement == "moving":
        size = cand["mark_size"]
        what = f"a {size[0]} x {size[1]} mark that moves from image to image within the zone"
    else:
        what = "a fixed mark"
    rem = cand.get("removal") or {"effect": 0.0, "random_effect": 0.0, "n": 0, "removal": None}
    summary = (
        f"{cls!r} is decided by {what} at {box}: stamping it on {flip['n']} images of other classes "
        f"turns {pct(flip['value'])} (95% CI {pct(flip['lo'])}–{pct(flip['hi'])}) into {cls!r}, against "
        f"{pct(null['value'])} for other content or a random-colour patch there (p = {flip['p_value']:.2g}, "
        f"{cand['correction']}); removing it from {rem['n']} images of the class costs "
        f"{num(rem['effect'])} confidence vs {num(rem['random_effect'])} for random boxes"
        + (
            f", and {pct(rem['lost'])} of them leave the class vs {pct(rem['random_lost'])}."
            if "lost" in rem
            else "."
        )
    )
    evidence = {
        "flip": _estimate(flip),
        "null_flip": _estimate(null),
        "gain": _estimate(cand["gain"]),
        "removal": {
            "effect": rem["effect"],
            "random_effect": rem["random_effect"],
            "n": rem["n"],
            "lost_class": rem.get("lost"),
            "random_lost_class": rem.get("random_lost"),
        },
        "removal_estimate": _estimate(rem.get("removal")),
        "content": cand["content"],
        "n_candidates": cand["n_candidates"],
        "correction": cand["correction"],
        "excess_flip": cand["excess_flip"],
        "source": "hint" if name else "discovery",
        "region": name,
        "placement": placement,
        "mark_size": cand.get("mark_size", list(box[2:])),
        "positions_heat_map": cand.get("positions_heat_map"),
        "examples": example_list,
    }
    return spurious_region(cls, summary, box, evidence)


def spurious_region(
    cls: str, summary: str, box: list[float] | list[int], evidence: dict[str, Any]
) -> Finding:
    """A `spurious_region` finding: a mark at `box` (a fixed mark's tight box, a moving one's zone)."""
    return Finding(
        kind="spurious_region",
        summary=summary,
        class_name=cls,
        box=[float(v) for v in box],
        evidence=evidence,
    )


def global_finding(g: dict[str, Any], height: int, width: int) -> Finding:
    """The `global_shortcut` finding of a confirmed colour cast: its scope is the whole image."""
    cls, flip, rem = g["class"], g["flip"], g["removal"]
    shift = ", ".join(num(v, 3) for v in g["shift"])
    summary = (
        f"{cls!r} is decided by its colour cast (mean RGB shift {shift}): moving it onto {flip['n']} images "
        f"of other classes turns {pct(flip['value'])} (95% CI {pct(flip['lo'])}–{pct(flip['hi'])}) into "
        f"{cls!r}, against {pct(flip['null_mean'])} for a shift of the same size in a random colour "
        f"(p = {flip['p_value']:.2g}, {g['correction']}); taking it off the class's own images costs "
        f"{num(rem['value'])} confidence vs {num(rem['null_mean'] or 0.0)}."
    )
    evidence = {
        "scope": "image",
        "shift": g["shift"],
        "flip": _estimate(flip),
        "removal": _estimate(rem),
        "gain": _estimate(g["gain"]),
        "correction": g["correction"],
        "excess_flip": g["excess_flip"],
    }
    return global_shortcut(cls, summary, evidence, height, width)


def global_shortcut(cls: str, summary: str, evidence: dict[str, Any], height: int, width: int) -> Finding:
    """A `global_shortcut` finding: a signal spread over the whole image, so its box is the image."""
    return Finding(
        kind="global_shortcut",
        summary=summary,
        class_name=cls,
        box=[0.0, 0.0, float(width), float(height)],
        evidence=evidence,
    )
