"""Validity of spurious-signal discovery on planted shortcuts: detection rate, box IoU, false alarms.

Each case trains a tiny model on a task with a shortcut planted on class 0 (kind, place, bias), measures
how much the model uses it (stamp flip rate on other-class images), then runs discovery *without a hint*
on held-out images with the same bias. Every (task, arch) has a clean twin (same seed, no artifact),
which must give no finding. A local case counts toward the "must find" bar when its measured flip rate
is at least 30%; it is found when a confirmed `spurious_region` of class 0 has IoU >= 0.5 with the true
box. A tint case is found when the global finding names class 0 and no box is reported for it.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.validity            # the full design
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.validity --only stripes-patch

Writes bench/results/validity.json (every case as it finishes) and validity.md (the table).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from auditors.audits.spurious_signal.boxes import iou
from auditors.audits.spurious_signal.counterfactual import choose_removal_strategy
from auditors.audits.spurious_signal.discover import discover
from auditors.audits.spurious_signal.nulls import Probe
from auditors.engine import plain_logits
from auditors.zoo.planted import MEAN, STD, Case, build

CNN, VIT = "occulta_resnet_tiny", "occulta_vit_tiny"
MUST_FLIP = 0.3
MIN_IOU = 0.5

# A balanced design: each (task, arch) gets every kind once; places and bias levels rotate so each
# kind meets several places and biases across the four blocks.
DESIGN: list[tuple[str, str, str, str, float]] = [
    ("stripes", CNN, "patch", "corner", 1.0),
    ("stripes", CNN, "bar", "edge", 0.5),
    ("stripes", CNN, "texture", "centre", 0.3),
    ("stripes", CNN, "glyph", "corner", 0.5),
    ("stripes", CNN, "tint", "-", 1.0),
    ("stripes", VIT, "patch", "edge", 0.5),
    ("stripes", VIT, "bar", "corner", 1.0),
    ("stripes", VIT, "texture", "corner", 0.5),
    ("stripes", VIT, "glyph", "centre", 0.3),
    ("stripes", VIT, "tint", "-", 1.0),
    ("shapes", CNN, "patch", "centre", 0.5),
    ("shapes", CNN, "bar", "corner", 0.3),
    ("shapes", CNN, "texture", "edge", 1.0),
    ("shapes", CNN, "glyph", "edge", 1.0),
    ("shapes", CNN, "tint", "-", 0.5),
    ("shapes", VIT, "patch", "corner", 0.3),
    ("shapes", VIT, "bar", "centre", 0.5),
    ("shapes", VIT, "texture", "centre", 1.0),
    ("shapes", VIT, "glyph", "corner", 1.0),
    ("shapes", VIT, "tint", "-", 1.0),
]


def cases(n_train: int) -> list[Case]:
    planted = [Case(t, k, p, b, a, n_train=n_train) for t, a, k, p, b in DESIGN]
    twins: list[Case] = []
    for c in planted:
        if c.twin() not in twins:
            twins.append(c.twin())
    return planted + twins


def run_case(case: Case, epochs: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    planted = build(case, epochs=epochs)
    trained = time.perf_counter() - start
    x, labels = planted.audit.images, planted.audit.labels
    pred = plain_logits(planted.model, x, mean=MEAN, std=STD).argmax(1)
    strategy, _ = choose_removal_strategy(planted.model, x, mean=MEAN, std=STD, patch_size=4, seed=0)
    probe = Probe(planted.model, MEAN, STD, strategy, seed=0)
    names = [str(i) for i in range(case.classes)]
    t0 = time.perf_counter()
    found = discover(probe, x, pred, labels, names)
    seconds = time.perf_counter() - t0
    local = [
        {
            "class": int(c["class"]),
            "box": c["box"],
            "iou": round(iou(c["box"], case.box), 3) if case.box else None,
            "flip": c["flip"],
            "excess_flip": c["excess_flip"],
            "removal": {k: v for k, v in c.get("removal", {}).items() if k != "removal"},
        }
        for c in found.confirmed
    ]
    glob = [
        {"class": int(g["class"]), "flip": g["flip"], "excess_flip": g["excess_flip"]}
        for g in found.global_confirmed
    ]
    hits = [f for f in local if f["class"] == case.cls and (f["iou"] or 0) >= MIN_IOU]
    if case.kind == "none":
        hit, false_alarms = None, len(local) + len(glob)
    elif case.kind == "tint":
        hit = any(g["class"] == case.cls for g in glob) and not any(f["class"] == case.cls for f in local)
        false_alarms = len(local) + sum(g["class"] != case.cls for g in glob)
    else:
        hit = bool(hits)
        false_alarms = sum(f["class"] != case.cls or (f["iou"] or 0) < 0.1 for f in local) + len(glob)
    return {
        "case": case.name,
        "task": case.task,
        "arch": "cnn" if "resnet" in case.arch else "vit",
        "kind": case.kind,
        "place": case.place,
        "bias": case.bias,
        "true_box": list(case.box) if case.box else None,
        "accuracy": round(planted.accuracy, 3),
        "stamp_flip": None if planted.stamp_flip is None else round(planted.stamp_flip, 3),
        "n_flip": planted.n_flip,
        "must_find": case.kind != "none" and (planted.stamp_flip or 0.0) >= MUST_FLIP,
        "found": hit,
        "best_iou": max((f["iou"] or 0.0 for f in local if f["class"] == case.cls), default=None),
        "false_alarms": false_alarms,
        "confirmed": local,
        "global": glob,
        "n_candidates": len(found.candidates),
        "content_null": found.content_null,
        "strategy": strategy,
        "train_seconds": round(trained, 1),
        "discovery_seconds": round(seconds, 1),
    }


def _fmt(v: float | None, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    s = format(v, spec)
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | task | arch | kind | place | bias | acc | stamp flip (n) | must find | found | IoU "
        "| found flip [95% CI] | false alarms |\n|" + "---|" * 13
    )
    lines = [head]
    for r in rows:
        best = next((f for f in r["confirmed"] if f["class"] == 0), None)
        glob = next((g for g in r["global"] if g["class"] == 0), None)
        shown = best or glob
        flip = (
            f"{_fmt(shown['flip']['value'])} [{_fmt(shown['flip']['lo'])}, {_fmt(shown['flip']['hi'])}]"
            if shown
            else "-"
        )
        found = {None: "-", True: "yes", False: "no"}[r["found"]]
        if r["kind"] == "tint" and r["found"]:
            found = "yes (global)"
        lines.append(
            f"| {r['case']} | {r['task']} | {r['arch']} | {r['kind']} | {r['place']} | {r['bias']:g} "
            f"| {_fmt(r['accuracy'])} | {_fmt(r['stamp_flip'])} ({r['n_flip']}) | "
            f"{'yes' if r['must_find'] else 'no'} | {found} | {_fmt(r['best_iou'])} | {flip} "
            f"| {r['false_alarms']} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    must = [r for r in rows if r["must_find"] and r["kind"] != "tint"]
    tints = [r for r in rows if r["kind"] == "tint"]
    twins = [r for r in rows if r["kind"] == "none"]
    planted = [r for r in rows if r["kind"] != "none"]
    ious = [r["best_iou"] for r in must if r["found"]]
    return {
        "local_must_find": len(must),
        "local_found": sum(bool(r["found"]) for r in must),
        "local_found_below_bar": sum(
            bool(r["found"]) for r in rows if r["kind"] not in ("none", "tint") and not r["must_find"]
        ),
        "local_below_bar": sum(r["kind"] not in ("none", "tint") and not r["must_find"] for r in rows),
        "mean_iou_found": round(sum(ious) / len(ious), 3) if ious else None,
        "min_iou_found": min(ious) if ious else None,
        "tint_found": sum(bool(r["found"]) for r in tints),
        "tint_cases": len(tints),
        "tint_must_find": sum(r["must_find"] for r in tints),
        "clean_twins": len(twins),
        "clean_twins_with_false_alarm": sum(r["false_alarms"] > 0 for r in twins),
        "planted_cases_with_extra_finding": sum(r["false_alarms"] > 0 for r in planted),
    }


def write(rows: list[dict[str, Any]], out: Path) -> str:
    s = summary(rows)
    md = (
        "# Spurious-signal discovery on planted shortcuts\n\n"
        "Written by `python -m bench.validity`. Discovery runs without a hint on 160 held-out images "
        "(same bias as training); shortcut class 0. *stamp flip*: share of other-class images the true "
        "artifact turns into class 0 (how much the model uses it); *must find*: stamp flip >= 0.30 "
        "(local kinds: a confirmed `spurious_region` of class 0 with IoU >= 0.5; tint: the global "
        "finding for class 0 and no box); *found flip*: the flip rate discovery measured with its own "
        "pattern, Wilson 95% interval; *false alarms*: confirmed findings on a clean twin, or findings "
        "on a planted case other than its shortcut.\n\n"
        f"{table(rows)}\n\n"
        f"- local shortcuts that must be found: {s['local_found']}/{s['local_must_find']} found with IoU >= 0.5 "
        f"(mean IoU {s['mean_iou_found']}, min {s['min_iou_found']}); below the bar (flip < 0.30): "
        f"{s['local_found_below_bar']}/{s['local_below_bar']} found anyway\n"
        f"- global tints: {s['tint_found']}/{s['tint_cases']} found as the global finding "
        f"({s['tint_must_find']} with stamp flip >= 0.30)\n"
        f"- clean twins with any finding: {s['clean_twins_with_false_alarm']}/{s['clean_twins']}\n"
        f"- planted cases with a finding other than their shortcut: "
        f"{s['planted_cases_with_extra_finding']}/{len([r for r in rows if r['kind'] != 'none'])}\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "validity.md").write_text(md)
    (out / "validity.json").write_text(json.dumps({"summary": s, "cases": rows}, indent=2))
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for case in cases(args.n_train):
        if args.only and args.only not in case.name:
            continue
        row = run_case(case, args.epochs)
        rows.append(row)
        print(
            f"{row['case']}: flip {row['stamp_flip']} found {row['found']} iou {row['best_iou']} "
            f"false {row['false_alarms']} ({row['train_seconds']}s + {row['discovery_seconds']}s)",
            flush=True,
        )
        write(rows, args.out)
    print(write(rows, args.out))


if __name__ == "__main__":
    main()
