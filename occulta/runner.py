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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from occulta import __version__
from occulta.cards import load_card, load_model, sha256_file, weights_path
from occulta.datasets import load_dataset
from occulta.errors import AuditConfigError, OccultaError
from occulta.hints import validation_parts

if TYPE_CHECKING:
    from torch import nn

    from auditors.audits.context import AuditContext
    from auditors.regions import Region
    from auditors.report import AuditResult, Report, SampleSummary
    from occulta.cards import ModelCard

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
# (card, card path, device) -> the model in eval mode on the device; a worker passes a cached one.
ModelLoader = Callable[["ModelCard", Path, str], "nn.Module"]


def load_prepared(card: ModelCard, card_path: Path, device: str) -> nn.Module:
    """The default `ModelLoader`: build, load the weights, move to the device."""
    from auditors.engine import prepare_model

    return prepare_model(load_model(card, card_path), device)


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
    from auditors.registry import UnknownAuditError, config_class, parse_config

    if not audits:
        raise AuditConfigError("no audits requested; name at least one (e.g. missingness_bias)")
    extra = sorted(set(audit_configs or {}) - set(audits))
    if extra:
        raise AuditConfigError(f"config given for audits not in the battery: {', '.join(extra)}")
    parsed = {}
    for name in audits:
        try:
            parsed[name] = parse_config(name, (audit_configs or {}).get(name))
        except UnknownAuditError as exc:
            raise AuditConfigError(str(exc)) from None
        except ValidationError as exc:
            first = validation_parts(exc, config_class(name), "config")[0]
            raise AuditConfigError(f"{name} config: {first}") from None
    return parsed


def parse_regions(
    regions: Sequence[Region | dict[str, Any]] | None, size: tuple[int, int] | None = None
) -> list[Region]:
    """Regions as `Region`s (dicts validated), each checked to fit a `size` (height, width) input when
    one is given: the one check the CLI, the API (at request time) and the worker all run."""
    from auditors.regions import Region

    out = []
    for i, raw in enumerate(regions or []):
        try:
            region = raw if isinstance(raw, Region) else Region.model_validate(raw)
            if size is not None:
                region.pixel_box(*size)
        except ValidationError as exc:
            raise AuditConfigError(f"region {i}: {validation_parts(exc, Region, 'region')[0]}") from None
        except ValueError as exc:
            raise AuditConfigError(f"region {i}: {exc}") from None
        out.append(region)
    return out


def cpu_fingerprint() -> str:
    """The CPU's model name and the kernel family torch uses on it (e.g. "AMD EPYC, AVX512")."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model
            )
    except OSError:
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


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
        "cpu": cpu_fingerprint(),
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
    regions: Sequence[Region | dict[str, Any]] | None = None,
    cancelled: Callable[[], bool] | None = None,
    indices: range | None = None,
    model_loader: ModelLoader = load_prepared,
) -> Prepared:
    """Load the card, weights and (a sample of) the dataset; see `run_battery`. With `indices`, only
    that range of the sampled images is loaded (a shard), at `ctx.image_offset`."""
    from auditors.audits.context import AuditContext, ResolvedRegion
    from auditors.engine import model_family
    from auditors.report import DatasetDescription, Environment, ModelDescription, Report

    card_path = Path(card_path)
    card = load_card(card_path)
    dev = resolve_device(device)
    model = model_loader(card, card_path, dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = (card.input_size[1], card.input_size[2])
    checked = parse_regions(regions, size)
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
        regions=[ResolvedRegion.of(r, *size) for r in checked],
        cancelled=cancelled,
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


def clean_predictions(ctx: AuditContext, images: range | None = None) -> tuple[list[int], list[int] | None]:
    """(predicted class, label or None) of the context's images (`images`: a range of them), from one
    clean forward pass; a sharded job's shards each predict a share of the sample this way."""
    from auditors.engine import plain_logits

    span = images if images is not None else range(ctx.n_images)
    x = ctx.images[span.start : span.stop]
    predicted = [
        int(p) for p in plain_logits(ctx.model, x, mean=ctx.mean, std=ctx.std).argmax(1).cpu().tolist()
    ]
    labels = (
        None if ctx.labels is None else [int(y) for y in ctx.labels[span.start : span.stop].cpu().tolist()]
    )
    return predicted, labels


def sample_summary(ctx: AuditContext) -> SampleSummary:
    """Accuracy and the confusion matrix on the audited sample, from one clean forward pass: the context
    the audits are read against (the same images every audit used)."""
    from auditors.sample_summary import summarize_sample

    predicted, labels = clean_predictions(ctx)
    return summarize_sample(predicted, labels, ctx.num_classes)


def finish_report(report: Report, out_dir: Path, *, memory: list[str], wall_seconds: float) -> Report:
    """Close a report whose audits are all in: memory events, wall time, verdicts, and the files
    (a single run, and a sharded job's merge, which loads neither the model nor the images)."""
    report.environment.memory = memory
    report.wall_seconds = round(wall_seconds, 3)
    report.finalize()
    write_report(report, out_dir)
    return report


def run_fitting(auditor: Any, ctx: AuditContext, config: Any) -> AuditResult:
    """Run one audit; memory never decides its verdict. The engine halves batches that do not fit
    (`auditors.engine.batching`); if even one image, or the audit's own tensors, run out of GPU memory,
    the audit runs again on the CPU (slower, same answer) and the report's environment says so."""
    import torch

    from auditors.engine import batching, model_device

    try:
        return auditor.run(ctx, config)
    except torch.cuda.OutOfMemoryError as exc:
        device = model_device(ctx.model)
        batching.record(f"{auditor.name}: out of memory on {device} ({str(exc)[:120]}); re-run on the CPU")
        ctx.model.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            return auditor.run(ctx, config)
        finally:
            ctx.model.to(device)


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
    regions: Sequence[Region | dict[str, Any]] | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    completed: dict[str, AuditResult] | None = None,
    on_audit_done: Callable[[AuditResult], None] | None = None,
    model_loader: ModelLoader = load_prepared,
    plan: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
) -> Report:
    """Run `audits` and write the report into `out_dir`; see the module docstring."""
    from auditors.engine import batching
    from auditors.errors import AuditCancelled
    from auditors.registry import audit_info, get_auditor
    from auditors.report import AuditResult

    t0 = time.perf_counter()
    batching.drain_events()  # this run's memory events only
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
        model_loader=model_loader,
    )
    ctx, report = prepared.ctx, prepared.report
    if plan is not None:  # the cost estimate; a budget may shrink configs and the images
        configs = plan(ctx, configs)
        report.dataset.n_images = ctx.n_images
    report.sample = sample_summary(ctx)
    out_dir = Path(out_dir)
    for i, name in enumerate(audits):
        auditor = get_auditor(name)
        if completed and name in completed:
            completed[name].role = audit_info(name).role
            report.audits.append(completed[name])
            continue

        def _progress(f: float, msg: str, i: int = i, name: str = name) -> None:
            if progress is not None:
                progress((i + f) / len(audits), f"{name}: {msg}" if msg else name)

        ctx.progress = _progress
        _progress(0.0, "starting")
        started = time.perf_counter()
        try:
            result = run_fitting(auditor, ctx, configs[name])
        except AuditCancelled:
            raise
        except (ValueError, OccultaError) as exc:
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
        result.role = audit_info(name).role
        report.audits.append(result)
        if on_audit_done is not None:
            on_audit_done(result)
        _progress(1.0, "done")
    return finish_report(
        report, out_dir, memory=batching.drain_events(), wall_seconds=time.perf_counter() - t0
    )
