"""`occulta audit` and `occulta demo`: local runs on the embedded default, no server needed."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from occulta.cli.app import app, fail
from occulta.cli.mlflow_options import MlflowExperiment, MlflowFlag, MlflowRun, MlflowUri, log_to_mlflow
from occulta.cli.progress import console, progress_bar


def _parse_region(spec: str) -> dict[str, Any]:
    from auditors.regions import parse_box_spec

    try:
        return parse_box_spec(spec, "region").model_dump(exclude_none=True)
    except ValueError as exc:
        fail(f"--region {str(exc).splitlines()[0]}")


def _inline_artifacts(regions: list[Any], base: Path) -> list[Any]:
    """A region's `artifact` in the YAML names a local PNG (relative to the config file): read it here
    and send its bytes inline, since a region never carries a path (docs/architecture.md, regions)."""
    out = []
    for i, region in enumerate(regions):
        if isinstance(region, dict) and isinstance(region.get("artifact"), str):
            path = base / region["artifact"]
            try:
                data = path.read_bytes()
            except OSError as exc:
                fail(f"region {i}: cannot read artifact image {path}: {exc.strerror}")
            region = {**region, "artifact": base64.b64encode(data).decode()}
        out.append(region)
    return out


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read --config {path}: {str(exc).splitlines()[0]}")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        fail(f"--config {path}: expected a mapping of audit name -> settings")
    return raw


def print_verdicts(report: Any, out: Path) -> None:
    from rich.table import Table

    from occulta.report_view import MODEL_VERDICT, report_view

    view = report_view(report)
    table = Table(
        title=f"{report.model.arch}: {MODEL_VERDICT.lower()} {view.icon} {view.verdict_label.upper()}"
    )
    table.add_column("audit")
    table.add_column("about")
    table.add_column("verdict")
    table.add_column("rests on")
    table.add_column("summary", overflow="fold")
    for a in view.audits:  # the model's audits first, then the explanation caveats
        table.add_row(a.name, a.role_label, f"{a.icon} {a.verdict}", a.rests_on, a.summary)
    console.print(table)
    console.print(report.headline)
    console.print(f"report: {out / 'report.html'}")


@app.command()
def audit(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model card (JSON/YAML) naming arch and weights.")
    ],
    data: Annotated[
        str, typer.Option("--data", "-d", help="Folder, .zip/.tar(.gz) archive, or synthetic:...")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for report.json/html and artifacts.")],
    audits: Annotated[
        str, typer.Option("--audits", "-a", help="Comma-separated audit names.")
    ] = "missingness_bias",
    config: Annotated[
        Path | None, typer.Option(help="YAML: audit name -> settings; `regions:` list too.")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="Audit a seeded sample of N images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and every random choice.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    region: Annotated[
        list[str] | None, typer.Option(help="Suspected region NAME:x,y,w,h (repeatable).")
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="Seconds to fit in: shrink sample sizes to the estimate, and say what changed."),
    ] = None,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the model first (pays off on long GPU runs; each new batch shape compiles).",
        ),
    ] = False,
    mlflow: MlflowFlag = False,
    mlflow_uri: MlflowUri = None,
    mlflow_experiment: MlflowExperiment = None,
    mlflow_run_id: MlflowRun = None,
) -> None:
    """Audit one model on one dataset and write report.json, report.html and summary.md.

    Before running it prints the forward passes per audit and the time they should take here,
    from a few seconds of calibration on the loaded model."""
    if budget is not None and budget <= 0:
        fail(f"--budget {budget}: give the seconds the run may take, e.g. --budget 600")
    names = [a.strip() for a in audits.split(",") if a.strip()]
    raw = _load_config(config)
    base = config.parent if config is not None else Path.cwd()
    regions = _inline_artifacts(list(raw.pop("regions", None) or []), base)
    regions += [_parse_region(r) for r in region or []]
    check_inputs(model, data, names, device)  # seconds before torch is imported, not after
    from occulta.estimate import describe, planner
    from occulta.runner import run_battery

    with progress_bar(model.stem) as update:
        report = run_battery(
            card_path=model,
            data_ref=data,
            audits=names,
            audit_configs=raw,
            out_dir=out,
            device=device,
            samples=samples,
            seed=seed,
            regions=regions,
            progress=update,
            plan=planner(
                budget,
                lambda est: console.print("\n".join(["cost estimate:", *describe(est)])),
                compile_model=compile_model,
            ),
        )
    print_verdicts(report, out)
    if mlflow:
        log_to_mlflow(report, out, mlflow_uri, mlflow_experiment, mlflow_run_id)


def check_inputs(model: Path, data: str, names: list[str], device: str) -> None:
    """Everything that can be checked without torch: audit names (with a hint), the card (keys and
    architecture, with hints), the weights file, the dataset path and the device name."""
    from auditors.registry import audit_infos
    from occulta.cards import load_card, weights_path
    from occulta.datasets import check_reference
    from occulta.errors import OccultaError
    from occulta.hints import did_you_mean

    if not names:
        fail("--audits needs at least one audit name, e.g. missingness_bias")
    known = sorted(audit_infos())
    for name in names:
        if name not in known:
            fail(f"unknown audit {name!r}{did_you_mean(name, known, 0.6)}; available: {', '.join(known)}")
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        fail(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    try:
        card = load_card(model)
        weights = weights_path(card, model)
        if not weights.is_file():
            fail(f"weights {weights} named by the card {model.name} do not exist")
        check_reference(data)
    except OccultaError as exc:
        fail(str(exc))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where models and reports go.")] = Path("demo-out"),
    audits: Annotated[
        str | None, typer.Option(help="Comma-separated audits (default: the demo battery).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for data, training and audits.")] = 0,
    readme: Annotated[
        Path | None, typer.Option(help="Also write the results table into this README (between its markers).")
    ] = None,
) -> None:
    """Train a tiny CNN and ViT on a task with a planted shortcut, audit both, write the reports."""
    import time

    from occulta.demo import DEMO_MODELS, audit_demo_model, demo_battery, pin_threads, train_demo_model
    from occulta.demo_table import ReadmeTableError, readme_table, results_table, write_readme_table
    from occulta.runner import resolve_device

    if readme is not None:
        try:  # refuse before minutes of training, not after
            readme_table(readme.read_text(encoding="utf-8"))
        except (OSError, ReadmeTableError) as exc:
            fail(f"--readme {readme}: {exc}")

    pin_threads()  # the same seed on the same machine gives the same reports
    battery, configs = demo_battery([a.strip() for a in audits.split(",")] if audits else None)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    reports = {}
    for key, spec in DEMO_MODELS.items():
        with console.status(f"training the demo {key} ({spec['arch']}, artifact: {spec['artifact']})"):
            t = time.perf_counter()
            card = train_demo_model(key, out / "models", seed=seed, device=dev)
        console.print(f"trained {key} in {time.perf_counter() - t:.1f} s → {card}")
        with progress_bar(f"auditing {key}") as update:
            report = audit_demo_model(
                card, out / key, battery=battery, configs=configs, device=dev, seed=seed, progress=update
            )
        print_verdicts(report, out / key)
        reports[key] = report
    # The README's results table comes from these reports, never from a person's copy of them.
    (out / "results.md").write_text(results_table(reports), encoding="utf-8")
    if readme is not None:
        write_readme_table(readme, reports)
        console.print(f"wrote the results table into {readme}")
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; open {out / 'cnn' / 'report.html'}")
