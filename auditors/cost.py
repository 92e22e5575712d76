"""What an audit battery costs before it runs: forward passes per audit, then seconds on this device.

Each audit's cost is a count of images sent through the model, split by kind: `forward` (inference,
batched by the engine), `gradient` (forward + backward, for saliency and gradient BackSelect) and
`calls` (model invocations, each with a fixed overhead that dominates small models on a GPU), plus
`figures` (report plots, which cost as much as the model work of a tiny model on a CPU). The
counts follow each audit's code path from its config and the run's shape, so they need no torch and
the API can compute them in a request. Seconds come from a short calibration (`auditors.calibration`) of
the actual model at its input size and of one plot: seconds = forward x t_forward + gradient x t_gradient + calls x
t_call + figures x t_figure.

Each audit counts its own passes (`Audit.forward_passes`, beside the code that makes them); counts
that depend on the data (how many discovery candidates survive, how many images a class has) take
their upper bound, so the estimate errs long. An audit that does not say is reported without a count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from auditors.audits.info import AuditConfig
from auditors.passes import Passes, RunShape

if TYPE_CHECKING:
    from auditors.audits.base import Audit

Auditors = Mapping[str, "Audit[Any, Any]"]  # the battery's audits by name (the caller's registry lookup)


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
    notes: list[str] = field(default_factory=list)  # audits whose sample cannot decide, and what would

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
            "notes": self.notes,
        }


def estimate(
    auditors: Auditors, configs: dict[str, AuditConfig], shape: RunShape, calibration: Calibration | None
) -> Estimate:
    """Each audit's own count (`Audit.forward_passes`; None for one that does not say), in seconds
    when there is a calibration."""
    out = Estimate(calibration=calibration)
    total = 0.0
    for name, cfg in configs.items():
        p = auditors[name].forward_passes(cfg, shape)
        secs = None if p is None or calibration is None else calibration.seconds_for(p)
        out.audits[name] = {
            "forward_passes": None if p is None else p.total,
            "gradient_passes": None if p is None else p.gradient,
            "seconds": None if secs is None else round(secs, 2),
        }
        plan = decision_plan(auditors[name], cfg, shape, calibration)
        if plan is not None:
            out.audits[name]["power"] = plan
            if not plan["decides"]:
                out.notes.append(plan["note"])
        total += secs or 0.0
    out.seconds = total if calibration is not None else None
    return out


def decision_plan(
    auditor: Audit[Any, Any], config: AuditConfig, shape: RunShape, calibration: Calibration | None
) -> dict[str, Any] | None:
    """Whether the audit's sample can decide its rule at the planning effect (the config's
    `planned_n`, docs/audits.md "Sample sizes from power"), and if not, the n that would and its
    seconds. None for an audit without a power plan."""
    planned = getattr(config, "planned_n", None)
    n_images = getattr(config, "n_images", None)
    if not callable(planned) or not isinstance(n_images, int):
        return None
    need = int(planned())
    n = min(n_images, shape.n_images)
    plan: dict[str, Any] = {"n": n, "n_to_decide": need, "decides": n >= need, "basis": "planning effect"}
    if n >= need:
        return plan
    bigger = auditor.forward_passes(
        config.model_copy(update={"n_images": need}), replace(shape, n_images=max(shape.n_images, need))
    )
    seconds = None if bigger is None or calibration is None else round(calibration.seconds_for(bigger), 2)
    plan["seconds_to_decide"] = seconds
    where = (
        f"n_images={need}"
        if shape.n_images >= need
        else f"n_images={need} and at least {need} images (the sample has {shape.n_images})"
    )
    cost = "" if seconds is None else f", about {seconds:g} s for this audit"
    name = auditor.info.name
    plan["note"] = f"{name}: {n} images may not decide its rule at the planning effect; {where} would{cost}."
    return plan


def fit_budget(
    auditors: Auditors,
    configs: dict[str, AuditConfig],
    shape: RunShape,
    calibration: Calibration,
    budget_s: float,
) -> tuple[dict[str, AuditConfig], int, list[str]]:
    """Shrink sample sizes until the estimate fits `budget_s`: (configs, images to keep, changes).

    Each round takes the costliest audit and shrinks by 30% its first knob (`AuditInfo.budget`) still
    above its floor,
    then the run's images (which every audit sees), down to 16. Changes read `audit.knob: old -> new`.
    Stops when nothing is left to shrink, so a budget below the floors is exceeded, and says so.
    """
    cfgs = {k: v.model_copy() for k, v in configs.items()}
    n = shape.n_images
    first: dict[str, Any] = {}
    for _ in range(500):
        est = estimate(auditors, cfgs, replace(shape, n_images=n), calibration)
        if est.seconds is None or est.seconds <= budget_s:
            break
        moved = False
        for name in sorted(est.audits, key=lambda a: -(est.audits[a]["seconds"] or 0.0)):
            for knob, floor in ((k.field, k.floor) for k in auditors[name].info.budget):
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
