"""Run a battery of audits on one model and one dataset, and write the report.

The single code path behind `occulta audit`, `occulta demo` and the Celery worker: load the card and
weights, load (a sample of) the dataset at the model's input size, run each auditor, write
`report.json`, a self-contained `report.html` and a Markdown `summary.md` into `out_dir`.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from occulta import __version__
from occulta.cards import load_card, load_model, sha256_file, weights_path
from occulta.datasets import load_dataset
from occulta.errors import AuditConfigError, OccultaError

if TYPE_CHECKING:
    from auditors.context import AuditContext, Region
    from auditors.report import AuditResult, Report

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise OccultaError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise OccultaError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def validate_battery(audits: list[str], audit_configs: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Check audit names and configs before any heavy work; returns the parsed configs."""
    from auditors.registry import UnknownAuditError, get_auditor

    if not audits:
        raise AuditConfigError("no audits requested; name at least one (e.g. missingness_bias)")
    extra = sorted(set(audit_configs or {}) - set(audits))
    if extra:
        raise AuditConfigError(f"config given for audits not in the battery: {', '.join(extra)}")
    parsed = {}
    for name in audits:
        try:
            auditor = get_auditor(name)
        except UnknownAuditError as exc:
            raise AuditConfigError(str(exc)) from None
        try:
            parsed[name] = auditor.Config.model_validate((audit_configs or {}).get(name) or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise AuditConfigError(f"{name} config: {loc}: {first['msg']}") from None
    return parsed


def resolve_regions(
    regions: list[dict[str, Any]] | None, size: tuple[int, int], base: Path | None
) -> list[Region]:
    """Regions from config dicts: box [x,y,w,h] in pixels, or in fractions when every value is <= 1."""
    import numpy as np
    import torch
    from PIL import Image

    from auditors.context import Region

    out = []
    h, w = size
    for i, r in enumerate(regions or []):
        box = r.get("box")
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise AuditConfigError(f"region {i}: box must be [x, y, w, h]")
        vals = [float(v) for v in box]
        if all(0 <= v <= 1 for v in vals):
            vals = [vals[0] * w, vals[1] * h, vals[2] * w, vals[3] * h]
        x, y, bw, bh = (round(v) for v in vals)
        if bw <= 0 or bh <= 0 or x < 0 or y < 0 or x + bw > w or y + bh > h:
            raise AuditConfigError(f"region {i}: box {box} does not fit the {w}x{h} model input")
        artifact = alpha = None
        if r.get("artifact"):
            apath = Path(r["artifact"])
            if not apath.is_absolute() and base is not None:
                apath = base / apath
            try:
                with Image.open(apath) as im:
                    rgba = im.convert("RGBA").resize((bw, bh), Image.Resampling.NEAREST)
            except OSError as exc:
                raise AuditConfigError(f"region {i}: cannot read artifact image {apath}: {exc}") from None
            arr = torch.from_numpy(np.asarray(rgba, dtype=np.float32) / 255.0)
            artifact, alpha = arr[..., :3].permute(2, 0, 1).contiguous(), arr[..., 3] > 0.5
        out.append(
            Region(str(r.get("name") or f"region{i}"), (x, y, bw, bh), artifact, alpha, r.get("image_index"))
        )
    return out


def _environment(device: str) -> dict[str, Any]:
    import numpy
    import timm
    import torch

    name = (
        torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else platform.processor()
    )
    return {
        "device": f"{device} ({name or platform.machine()})",
        "dtype": "bfloat16" if device.startswith("cuda") else "float32",
        "versions": {
            "occulta": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": numpy.__version__,
        },
    }


def write_report(report: Report, out_dir: Path) -> None:
    """report.json, report.html and summary.md, each written whole (temp file + rename)."""
    from occulta.render import render_html, render_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("report.json", report.model_dump_json(indent=2, by_alias=True)),
        ("report.html", render_html(report, out_dir)),
        ("summary.md", render_markdown(report)),
    ):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)


@dataclass
class Prepared:
    """A loaded run: the model on its device, the dataset as an `AuditContext`, and the report skeleton.
    Shard workers build the very same context as a single run, so image `i` is the same everywhere."""

    ctx: AuditContext
    report: Report
    n_sampled: int  # images in the whole (sampled) dataset; ctx may hold only a shard of them


def prepare_run(
    *,
    card_path: Path,
    data_ref: str,
    out_dir: Path,
    device: str = "auto",
    samples: int | None = None,
    seed: int = 0,
    regions: list[dict[str, Any]] | None = None,
    cancelled: Callable[[], bool] | None = None,
    indices: range | None = None,
) -> Prepared:
    """Load the card, weights and (a sample of) the dataset; see `run_battery`. With `indices`, only
    that range of the sampled images is loaded (a shard), at `ctx.image_offset`."""
    from auditors.context import AuditContext
    from auditors.engine import model_family, prepare_model
    from auditors.report import DatasetDescription, Environment, ModelDescription, Report

    card_path = Path(card_path)
    card = load_card(card_path)
    dev = resolve_device(device)
    model = prepare_model(load_model(card, card_path), dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = (card.input_size[1], card.input_size[2])
    with tempfile.TemporaryDirectory(prefix="occulta-data-") as tmp:
        data = load_dataset(
            data_ref,
            input_size=size,
            model_classes=card.class_names,
            samples=samples,
            seed=seed,
            crop_pct=card.crop_pct,
            interpolation=card.interpolation,
            work_dir=Path(tmp),
            indices=indices,
        )
    ctx = AuditContext(
        model=model,
        images=data.images,
        labels=data.labels,
        mean=card.mean,
        std=card.std,
        class_names=card.class_names,
        out_dir=out_dir,
        seed=seed,
        object_masks=data.object_masks,
        regions=resolve_regions(regions, size, card_path.parent),
        cancelled=cancelled,
        extras={"synthetic": data.synthetic},
        image_offset=data.offset,
    )
    report = Report(
        model=ModelDescription(
            arch=card.arch,
            arch_kwargs=card.arch_kwargs,
            family=model_family(model),
            num_classes=card.num_classes,
            class_names=card.class_names,
            input_size=list(card.input_size),
            mean=list(card.mean),
            std=list(card.std),
            parameters=sum(p.numel() for p in model.parameters()),
            weights_sha256=sha256_file(weights_path(card, card_path)),
            card=card.name or card_path.name,
        ),
        dataset=DatasetDescription(
            ref=data.ref,
            n_images=int(data.images.shape[0]),
            n_classes=len(data.class_names) or card.num_classes,
            class_names=data.class_names,
            image_size=list(size),
            labelled=data.labels is not None,
            sample_seed=seed,
            regions=[{"name": r.name, "box": list(r.box)} for r in ctx.regions],
        ),
        seed=seed,
        environment=Environment(**_environment(dev)),
    )
    return Prepared(ctx, report, data.n_sampled)


def run_battery(
    *,
    card_path: Path,
    data_ref: str,
    audits: list[str],
    audit_configs: dict[str, dict[str, Any]] | None = None,
    out_dir: Path,
    device: str = "auto",
    samples: int | None = None,
    seed: int = 0,
    regions: list[dict[str, Any]] | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    completed: dict[str, AuditResult] | None = None,
    on_audit_done: Callable[[AuditResult], None] | None = None,
) -> Report:
    """Run `audits` and write the report into `out_dir`; see the module docstring."""
    import torch

    from auditors.registry import get_auditor
    from auditors.report import AuditResult
    from auditors.signals import AuditCancelled

    t0 = time.perf_counter()
    configs = validate_battery(audits, audit_configs)
    prepared = prepare_run(
        card_path=card_path,
        data_ref=data_ref,
        out_dir=out_dir,
        device=device,
        samples=samples,
        seed=seed,
        regions=regions,
        cancelled=cancelled,
    )
    ctx, report = prepared.ctx, prepared.report
    out_dir = Path(out_dir)
    for i, name in enumerate(audits):
        auditor = get_auditor(name)
        if completed and name in completed:
            completed[name].role = getattr(auditor, "role", completed[name].role)
            report.audits.append(completed[name])
            continue

        def _progress(f: float, msg: str, i: int = i, name: str = name) -> None:
            if progress is not None:
                progress((i + f) / len(audits), f"{name}: {msg}" if msg else name)

        ctx.progress = _progress
        _progress(0.0, "starting")
        started = time.perf_counter()
        try:
            result = auditor.run(ctx, configs[name])
        except AuditCancelled:
            raise
        except (ValueError, OccultaError, torch.cuda.OutOfMemoryError) as exc:
            result = AuditResult(
                name=name, verdict="error", summary=f"{name} could not run: {exc}", error=str(exc)
            )
        except Exception as exc:  # an auditor bug must not lose the other audits' results
            log.exception("audit %s crashed", name)
            result = AuditResult(
                name=name,
                verdict="error",
                summary=f"{name} crashed ({type(exc).__name__}); the other audits are unaffected.",
                error="".join(traceback.format_exception_only(exc)).strip(),
            )
        result.seconds = result.seconds or round(time.perf_counter() - started, 3)
        # The audit's role decides whether its verdict is about the model or a caveat, even for an error.
        result.role = getattr(auditor, "role", result.role)
        report.audits.append(result)
        if on_audit_done is not None:
            on_audit_done(result)
        _progress(1.0, "done")
    report.wall_seconds = round(time.perf_counter() - t0, 3)
    report.finalize()
    write_report(report, out_dir)
    return report
