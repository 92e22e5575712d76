"""Validity of the spurious-signal audit on a planted population, through the path the CLI runs.

Each case (`auditors.zoo.population`) trains a tiny model with a shortcut of one kind planted on class
0 at a bias level (100/50/30% of the class's images carry it), or a clean twin (weak, low-accuracy
twins included), and verifies the planted model uses it (stamp flip: the share of other-class images
the trigger turns into class 0). The model is then saved as a card, its held-out images (same bias)
as a folder of class folders, and `occulta.runner.run_battery` runs `spurious_signal` on them exactly
as `occulta audit` does; the bench reads only the report. Per kind: detection rate (the model verdict
fails with a finding on class 0), AUROC of the verdict's evidence planted vs clean, the false-positive
rate on clean twins, box IoU (fixed marks), zone hit (moving marks), seconds per model.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice python -m bench.validity            # the full population
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.validity --quick         # a smoke test
    ... --baseline   (writes bench/results/validity_baseline.json instead)
    ... --size 64 --limit 26 --shard K/2   (each kind's 100% model and twin on both tasks at 64 px, into
        validity_64px.*; `--combine`, then `--update` with weak twins to add a few)

Writes bench/results/validity.json (every case as it finishes) and validity.md (the tables).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditors.audits.spurious_signal.boxes import inside, iou
from auditors.zoo.population import CNN, MEAN, STD, VIT, Built, PopCase, build
from auditors.zoo.triggers import BIASES, FIXED, GLOBAL, KINDS, MOVING

MUST_FLIP = 0.3
MIN_IOU = 0.5
AUDIT = "spurious_signal"


def population(quick: bool, size: int = 32) -> list[PopCase]:
    """The full design: every kind at every bias on both tasks (72 planted), the architecture
    alternating so each kind meets both on each task; one clean twin per planted case (same task, arch and seed),
    every third one weak; images of `size` pixels. `quick`: three planted kinds and two clean twins on
    small data."""
    if quick:
        n = 600
        planted = [
            PopCase("shapes", "patch", 1.0, CNN, seed=1, n_train=n, n_audit=160, size=size),
            PopCase("photos", "moving_tag", 1.0, CNN, seed=2, n_train=n, n_audit=160, size=size),
            PopCase("shapes", "blur", 1.0, CNN, seed=3, n_train=n, n_audit=160, size=size),
        ]
        return [*planted, planted[0].twin(), planted[1].twin(weak=True)]
    planted = []
    i = 0
    for kind in KINDS:
        for bias in BIASES:
            for task in ("shapes", "photos"):
                arch = CNN if (i // 2) % 2 == 0 else VIT  # flips with bias: both archs on both tasks
                planted.append(PopCase(task, kind, bias, arch, seed=i, n_audit=160, size=size))
                i += 1
    twins = [c.twin(weak=j % 3 == 2) for j, c in enumerate(planted)]
    # Run order (names and seeds stay as above): each planted model beside its twin, the strongest
    # bias of every kind on both tasks first, so a run stopped early holds every kind, planted and
    # clean models in proportion.
    pairs = sorted(zip(planted, twins, strict=True), key=lambda p: (BIASES.index(p[0].bias), p[0].seed % 2))
    return [c for pair in pairs for c in pair]


def _save(built: Built, folder: Path) -> tuple[Path, str, list[str]]:
    """The model as a card + safetensors, its audit images as PNG class folders: what a user uploads."""
    from PIL import Image
    from safetensors.torch import save_file

    from occulta.cards import ModelCard, write_card

    names = [f"class{k}" for k in range(built.case.classes)]
    save_file({k: v.contiguous() for k, v in built.model.state_dict().items()}, str(folder / "m.safetensors"))
    vit = built.case.arch == VIT  # a ViT's position table is sized by its image side: the card says it
    card = ModelCard(
        arch=built.case.arch,
        arch_kwargs={"img_size": built.case.size} if vit else {},
        weights="m.safetensors",
        input_size=(3, built.case.size, built.case.size),
        mean=MEAN,
        std=STD,
        class_names=names,
        name=built.case.name,
    )
    write_card(card, folder / "card.json")
    data = folder / "data"
    arr = (built.audit.images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for i, (a, y) in enumerate(zip(arr, built.audit.labels.tolist(), strict=True)):
        (data / names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(data / names[y] / f"{i:05d}.png")
    return folder / "card.json", str(data), names


def evidence_score(audit: dict[str, Any]) -> float:
    """The verdict's evidence as one number: 1 + the largest excess flip if the verdict fails, else
    the largest excess flip any candidate reached (so AUROC ranks by verdict, then by strength)."""
    metrics = audit.get("metrics", {})
    cands = [
        c for k in ("candidates", "global", "lowlevel", "patterns", "located") for c in metrics.get(k) or []
    ]
    excess = [float(c.get("excess_flip") or 0.0) for c in cands if isinstance(c, dict)]
    best = max([0.0, *excess])
    return (1.0 + best) if audit.get("verdict") == "fail" else best


def built_case(case: PopCase, cache: Path | None) -> tuple[Built, float]:
    """The trained case, from `cache` when an earlier run saved it (the baseline and the product
    then audit the very same models), with the seconds its training took."""
    from auditors.zoo.population import PopData, model_for

    path = cache / f"{case.name}.pt" if cache else None
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=False)
        model = model_for(case)
        model.load_state_dict(saved["state"])
        model.eval()
        data = PopData(**saved["audit"])
        return Built(case, model, data, saved["acc"], saved["clean_acc"], saved["flip"], saved["n"]), saved[
            "s"
        ]
    t0 = time.perf_counter()
    built = build(case)
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        a = built.audit
        audit = {"images": a.images, "labels": a.labels, "carries": a.carries, "boxes": a.boxes}
        torch.save(
            {
                "state": built.model.state_dict(),
                "audit": audit,
                "acc": built.accuracy,
                "clean_acc": built.clean_accuracy,
                "flip": built.stamp_flip,
                "n": built.n_flip,
                "s": seconds,
            },
            path.with_suffix(".part"),
        )
        path.with_suffix(".part").replace(path)  # whole or absent: another process may be reading
    return built, seconds


def run_case(case: PopCase, work: Path, cache: Path | None = None) -> dict[str, Any]:
    from occulta.runner import run_battery

    built, trained = built_case(case, cache)
    folder = work / case.name
    folder.mkdir(parents=True, exist_ok=True)
    card, data, names = _save(built, folder)
    t1 = time.perf_counter()
    run_battery(card_path=card, data_ref=data, audits=[AUDIT], out_dir=folder / "report", samples=160, seed=0)
    seconds = time.perf_counter() - t1
    report = json.loads((folder / "report" / "report.json").read_text())
    audit = next(a for a in report["audits"] if a["name"] == AUDIT)
    findings = audit.get("findings", [])
    mine = [f for f in findings if f.get("class") == names[case.cls]]
    shortcut = [f for f in findings if f["kind"] in ("spurious_region", "global_shortcut")]
    fixed_box = case.trigger.box if case.trigger else None
    boxes = [f["box"] for f in mine if f.get("box")]
    marks = list(built.audit.boxes.values())
    return {
        "case": case.name,
        "task": case.task,
        "arch": "cnn" if case.arch == CNN else "vit",
        "kind": case.kind,
        "placement": case.trigger.placement if case.trigger else None,
        "bias": case.bias,
        "weak": case.weak,
        "accuracy": round(built.accuracy, 3),
        "clean_accuracy": round(built.clean_accuracy, 3),
        "stamp_flip": None if built.stamp_flip is None else round(built.stamp_flip, 3),
        "n_flip": built.n_flip,
        "must_find": case.kind != "none" and (built.stamp_flip or 0.0) >= MUST_FLIP,
        "verdict": audit["verdict"],
        "detected": audit["verdict"] == "fail" and bool(mine),
        "evidence": round(evidence_score(audit), 4),
        "best_iou": round(max((iou(b, fixed_box) for b in boxes), default=0.0), 3) if fixed_box else None,
        # a zone hits when it holds at least half of some carrier's mark
        "zone_hit": any(inside(m, b) >= 0.5 for b in boxes for m in marks) if case.kind in MOVING else None,
        "findings": [
            {"kind": f["kind"], "class": f.get("class"), "box": f.get("box"), "summary": f["summary"][:160]}
            for f in findings
        ],
        "n_shortcut_findings": len(shortcut),
        "train_seconds": round(trained, 1),
        "audit_seconds": round(seconds, 1),
    }


def auroc(pos: list[float], neg: list[float]) -> float | None:
    """Probability a planted model's evidence exceeds a clean one's (ties count half)."""
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _mean(v: list[float]) -> float | None:
    return round(sum(v) / len(v), 3) if v else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    clean = [r for r in rows if r["kind"] == "none"]
    neg = [r["evidence"] for r in clean]
    per_kind: dict[str, Any] = {}
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        must = [r for r in rs if r["must_find"]]
        fixed = [r for r in must if r["best_iou"] is not None]
        moving = [r for r in must if r["zone_hit"] is not None]
        per_kind[kind] = {
            "models": len(rs),
            "must_find": len(must),
            "detected_must": sum(r["detected"] for r in must),
            "detection_rate": _mean([float(r["detected"]) for r in must]),
            "detected_all": sum(r["detected"] for r in rs),
            "auroc": None if (a := auroc([r["evidence"] for r in rs], neg)) is None else round(a, 3),
            "auroc_used": None if (u := auroc([r["evidence"] for r in must], neg)) is None else round(u, 3),
            "iou_ge_0.5": f"{sum(r['best_iou'] >= MIN_IOU for r in fixed)}/{len(fixed)}" if fixed else None,
            "zone_hit": f"{sum(bool(r['zone_hit']) for r in moving)}/{len(moving)}" if moving else None,
            "seconds": _mean([r["audit_seconds"] for r in rs]),
        }
    planted = [r for r in rows if r["kind"] != "none"]
    must = [r for r in planted if r["must_find"]]
    all_auroc = auroc([r["evidence"] for r in planted], neg)
    # A planted model that does not use its shortcut (stamp flip < MUST_FLIP) behaves as a clean one:
    # the verdict's separation is measured on the shortcuts the models use, all planted ones beside it.
    used_auroc = auroc([r["evidence"] for r in must], neg)
    return {
        "planted": len(planted),
        "clean": len(clean),
        "must_find": len(must),
        "detected_must": sum(r["detected"] for r in must),
        "clean_failed": sum(r["verdict"] == "fail" for r in clean),
        "auroc": None if all_auroc is None else round(all_auroc, 3),
        "auroc_used": None if used_auroc is None else round(used_auroc, 3),
        "seconds_per_model": _mean([r["audit_seconds"] for r in rows]),
        "per_kind": per_kind,
    }


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    s = summary(rows)
    head = (
        "| kind | placement | models | flip >= 0.30 | detected | AUROC used vs clean | AUROC all vs clean "
        "| IoU >= 0.5 | zone hit | s/model |"
    )
    lines = [head, "|" + "---|" * 10]
    for kind, k in s["per_kind"].items():
        place = (
            "fixed" if kind in FIXED else "moving" if kind in MOVING else "global" if kind in GLOBAL else "-"
        )
        lines.append(
            f"| {kind} | {place} | {k['models']} | {k['must_find']} | {k['detected_must']}/{k['must_find']} "
            f"(all: {k['detected_all']}/{k['models']}) | {k['auroc_used']} | {k['auroc']} | {k['iou_ge_0.5'] or '-'} "
            f"| {k['zone_hit'] or '-'} | {k['seconds']} |"
        )
    cases = [
        "| case | acc | stamp flip (n) | verdict | detected | evidence | IoU | zone | findings |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        kinds = ", ".join(f"{f['kind']}:{f['class']}" for f in r["findings"]) or "-"
        cases.append(
            f"| {r['case']} | {r['accuracy']:.2f} | {r['stamp_flip']} ({r['n_flip']}) | {r['verdict']} "
            f"| {r['detected']} | {r['evidence']:.2f} | {r['best_iou']} | {r['zone_hit']} | {kinds} |"
        )
    weak = sum(bool(r["weak"]) for r in rows if r["kind"] == "none")
    return (
        f"# {title}\n\nWritten by `python -m bench.validity`: each model audited by "
        "`occulta.runner.run_battery` (the path `occulta audit` runs) with the product's defaults, "
        "160 held-out images with the training bias, no hint; shortcut class `class0`. *detected*: the "
        "model verdict fails with a finding on class0, counted over planted models whose stamp flip is "
        ">= 0.30; *AUROC*: the verdict's evidence (1 + largest excess flip when it fails, else the "
        "largest excess flip of any candidate) of that kind's planted models against all clean twins: "
        "*used*, the planted models whose stamp flip is >= 0.30 (a model that ignores its planted "
        "shortcut behaves as a clean one); *all*, every planted model.\n\n"
        f"- planted models: {s['planted']}, clean twins: {s['clean']} ({weak} of them weak)\n"
        f"- shortcuts with stamp flip >= 0.30 detected: {s['detected_must']}/{s['must_find']}\n"
        f"- clean twins whose verdict fails: {s['clean_failed']}/{s['clean']}\n"
        f"- AUROC used shortcuts vs clean (all kinds): {s['auroc_used']}; every planted model vs clean: "
        f"{s['auroc']}; mean audit seconds per model: "
        f"{s['seconds_per_model']} (CPU, 1 thread)\n\n"
        + "\n".join(lines)
        + "\n\n## Every model\n\n"
        + "\n".join(cases)
        + "\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small population: a smoke test")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many models (0: all)")
    ap.add_argument("--baseline", action="store_true", help="write validity_baseline.json (a record)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument(
        "--size",
        type=int,
        default=32,
        help="image side in pixels (default 32); other sizes write validity_<size>px.json and .md",
    )
    ap.add_argument("--cache", type=Path, default=None, help="keep trained models here and reuse them")
    ap.add_argument("--train-only", action="store_true", help="only fill --cache, in run order")
    ap.add_argument(
        "--shard",
        default="",
        help="K/N: audit every N-th case from the K-th (0-based) into validity.shardK.json, so N processes "
        "share the population; --combine then writes validity.json and .md from the shards",
    )
    ap.add_argument("--combine", action="store_true", help="merge validity.shard*.json (see --shard)")
    ap.add_argument(
        "--update",
        default="",
        help="comma-separated case names: re-audit only these and replace their rows in the existing "
        "results (after a rule change that can move only them); the file lists what was re-run",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "validity_baseline" if args.baseline else "validity"
    if args.size != 32:
        stem += f"_{args.size}px"
    rows: list[dict[str, Any]] = []
    todo = [c for c in population(args.quick, args.size) if args.only in c.name]
    if args.train_only:  # a second process can fill the cache ahead of the one that audits
        if args.shard:  # N processes fill it together
            k, n = (int(v) for v in args.shard.split("/"))
            todo = todo[k::n]
        for case in todo:
            built_case(case, args.cache)
            print(f"trained {case.name}", flush=True)
        return {"summary": {}, "cases": []}
    if args.update:
        return _update(args.out / f"{stem}.json", args.update.split(","), args.cache, args.size)
    if args.combine:
        return _combine(args.out, stem, _title(args.quick, args.size), args.size)
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        todo, stem = todo[k::n], f"{stem}.shard{k}"
    with tempfile.TemporaryDirectory() as tmp:
        for case in todo[: args.limit or None]:
            row = run_case(case, Path(tmp), args.cache)
            rows.append(row)
            print(
                f"{row['case']}: flip {row['stamp_flip']} verdict {row['verdict']} detected {row['detected']} "
                f"iou {row['best_iou']} zone {row['zone_hit']} ({row['train_seconds']}s + {row['audit_seconds']}s)",
                flush=True,
            )
            result = {"summary": summary(rows), "cases": rows}
            (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
            if not args.baseline and not args.shard:
                (args.out / f"{stem}.md").write_text(markdown(rows, _title(args.quick, args.size)))
    return {"summary": summary(rows), "cases": rows}


def _title(quick: bool, size: int) -> str:
    extra = ([f"{size} px"] if size != 32 else []) + (["quick"] if quick else [])
    return "Spurious-signal audit on a planted population" + (f" ({', '.join(extra)})" if extra else "")


def _combine(out: Path, stem: str, title: str, size: int = 32) -> dict[str, Any]:
    """validity.json and .md from the shards' rows, in the population's run order."""
    order = {c.name: i for i, c in enumerate(population(False, size))}
    parts = sorted(out.glob(f"{stem}.shard*.json"))
    if not parts:
        raise SystemExit(f"--combine: no {stem}.shard*.json in {out}; run --shard K/N first")
    rows = sorted(
        (r for p in parts for r in json.loads(p.read_text())["cases"]),
        key=lambda r: order.get(r["case"], 1e9),
    )
    result = {"summary": summary(rows), "cases": rows}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.md").write_text(markdown(rows, title))
    for p in parts:
        p.unlink()
    return result


def _update(path: Path, names: list[str], cache: Path | None, size: int = 32) -> dict[str, Any]:
    """Re-audit the named cases and put their rows in place of the old ones (or add them, in the
    population's order, to a partial run such as `--limit`'s): a full population run takes the better
    part of an hour on 2 cores, and a rule that can only move a few verdicts (the ones it names) need
    not re-run the rest. The result records which rows are new."""
    old = json.loads(path.read_text())
    cases = {c.name: c for c in population(False, size)}
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise SystemExit(f"--update: no case named {unknown[0]!r} in the population")
    rows = list(old["cases"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = run_case(cases[name], Path(tmp), cache)
            print(f"{name}: verdict {row['verdict']} detected {row['detected']}", flush=True)
            rows = [r for r in rows if r["case"] != name] + [row]
    order = {name: i for i, name in enumerate(cases)}
    rows.sort(key=lambda r: order.get(r["case"], len(order)))
    rerun = sorted(set(old.get("rerun", [])) | set(names))
    result = {"summary": summary(rows), "cases": rows, "rerun": rerun}
    path.write_text(json.dumps(result, indent=2))
    note = f"\n\nRe-audited or added with `--update` (every other row unchanged): {', '.join(rerun)}.\n"
    md = markdown(rows, _title(False, size))
    path.with_suffix(".md").write_text(md.rstrip("\n") + note)
    return result


if __name__ == "__main__":
    main()
