"""Cost estimates for a battery: before a local run (`occulta audit`), and when the API queues one.

A local run calibrates the loaded model on its device (a few batched forwards, a backward and one
plot: seconds) and, with `--budget`, shrinks sample sizes to fit. The API never runs the model in a
request: it counts forward passes from the model card and the dataset size (no torch work), and turns
them into seconds with the calibration the last worker run of that model stored beside its weights
(`calibration.json`); before any run there is no calibration and `seconds` is null.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from auditors.cost import Calibration, Estimate, calibrate, estimate, fit_budget
from auditors.families import family_of_arch
from auditors.passes import RunShape

if TYPE_CHECKING:
    from auditors.audits.context import AuditContext
    from auditors.registry import AuditConfig

CALIBRATION_FILE = "calibration.json"
Planner = Callable[["AuditContext", dict[str, Any]], dict[str, Any]]


def shape_of_context(ctx: AuditContext) -> RunShape:
    from auditors.engine import vit_patch_size

    h, w = ctx.image_size
    fam = ctx.family
    return RunShape(
        n_images=ctx.n_images,
        height=h,
        width=w,
        num_classes=ctx.num_classes,
        family=fam,
        vit_patch=vit_patch_size(ctx.model) if fam == "vit" else None,
        device=str(ctx.device),
        n_regions=len(ctx.regions),
        has_object_masks=ctx.object_masks is not None,
        labelled=ctx.labels is not None,
    )


def shape_of_card(
    card: dict[str, Any],
    n_images: int,
    *,
    num_classes: int,
    samples: int | None = None,
    n_regions: int = 0,
) -> RunShape:
    """The run's shape from a stored model card and dataset size: what the API knows without torch."""
    family, patch = family_of_arch(str(card.get("arch", "")))
    _, h, w = card.get("input_size") or (3, 224, 224)
    kwargs = card.get("arch_kwargs") or {}
    return RunShape(
        n_images=min(n_images, samples) if samples else n_images,
        height=int(h),
        width=int(w),
        num_classes=num_classes,
        family=family,
        vit_patch=int(kwargs.get("patch_size", patch)) if patch else None,
        n_regions=n_regions,
    )


def shrink_context(ctx: AuditContext, n: int) -> None:
    """Keep the first `n` images of the run (a seeded sample, so a prefix is a smaller sample)."""
    ctx.images = ctx.images[:n]
    if ctx.labels is not None:
        ctx.labels = ctx.labels[:n]
    if ctx.object_masks is not None:
        ctx.object_masks = ctx.object_masks[:n]


def planner(
    budget_s: float | None, on_estimate: Callable[[Estimate], None], *, compile_model: bool = False
) -> Planner:
    """A `run_battery` plan hook: compile the model if asked, calibrate, fit the budget (if any),
    report the estimate. Compiling first means the calibration measures the compiled model."""

    def plan(ctx: AuditContext, configs: dict[str, Any]) -> dict[str, Any]:
        if compile_model:
            from auditors.engine.compiled import compile_model as compile_in_place

            compile_in_place(ctx.model)
        h, w = ctx.image_size
        cal = calibrate(ctx.model, h, w)
        changes: list[str] = []
        if budget_s is not None:
            configs, n, changes = fit_budget(configs, shape_of_context(ctx), cal, budget_s)
            if n < ctx.n_images:
                shrink_context(ctx, n)
        est = estimate(configs, shape_of_context(ctx), cal)
        est.changes = changes
        on_estimate(est)
        return configs

    return plan


def calibration_key(model_prefix: str) -> str:
    """Where a worker stores the calibration of a model: beside its weights, deleted with it."""
    return model_prefix.rstrip("/") + "/" + CALIBRATION_FILE


def calibration_json(cal: Calibration) -> bytes:
    return json.dumps({**asdict(cal), "measured_at": datetime.now(UTC).isoformat()}).encode()


def read_calibration(raw: bytes | None) -> tuple[Calibration, str] | None:
    """(calibration, when it was measured) from `calibration_json`'s bytes; None if absent or stale."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        when = str(data.pop("measured_at", ""))
        return Calibration(**data), when
    except (ValueError, TypeError):
        return None


def api_estimate(
    configs: dict[str, AuditConfig], shape: RunShape, calibration: bytes | None
) -> dict[str, Any]:
    """The `estimate` of `POST /v1/audits`: passes per audit, and seconds when a worker calibrated."""
    found = read_calibration(calibration)
    est = estimate(configs, shape, found[0] if found else None)
    out = est.as_dict()
    out["basis"] = (
        f"calibration of this model measured by a worker on {found[0].device} at {found[1]}"
        if found
        else "no calibration yet: a worker measures one on this model's first audit; passes only"
    )
    return out


def describe(est: Estimate) -> list[str]:
    """Lines for a terminal: per-audit passes and seconds, the total, and any budget changes."""
    lines = []
    for name, a in est.audits.items():
        secs = "?" if a["seconds"] is None else f"~{a['seconds']:.1f} s"
        passes = "?" if a["forward_passes"] is None else f"{a['forward_passes']:,}"
        lines.append(f"  {name:18s} {passes:>12s} passes  {secs}")
    cal = est.calibration
    if est.seconds is not None and cal is not None:
        lines.append(
            f"  estimate: ~{est.seconds:.0f} s on {cal.device} "
            f"({cal.forward_s * 1e3:.2f} ms per image forward, calibrated in {cal.seconds:.1f} s)"
        )
    for change in est.changes:
        lines.append(f"  budget: {change}")
    return lines
