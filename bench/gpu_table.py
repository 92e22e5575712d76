"""The issue's targets for `bench.gpu`, checked against a result, and the table it prints."""

from __future__ import annotations

from typing import Any


def targets(result: dict[str, Any], cuda: bool) -> list[dict[str, Any]]:
    """The issue's targets; absolute ones count only on CUDA at full size."""
    cnn = result["forward"]["cnn"]["rows"]
    best = {r["what"]: r for r in cnn}
    masked_c = best.get("masked black, compiled", {}).get("vs_plain_same_path")
    lime = result["lime"]
    rows = [
        ("masked pixel-fill forward / compiled plain forward (CNN)", masked_c, ">=", 0.9, True),
        (
            "LIME-1000 speed-up vs Captum, per_eval=64",
            lime["speedup_vs_captum_per_eval_64"],
            ">=",
            13.0,
            True,
        ),
        ("LIME-1000 seconds per image (CNN)", lime["ours_seconds_per_image"], "<=", 0.055, cuda),
        (
            "occlusion (196 windows) seconds per image",
            result["occlusion"]["ours_seconds_per_image"],
            "<=",
            0.012,
            cuda,
        ),
        ("token-drop speed-up at 50% of tokens", result["token_drop"]["speedup"], ">=", 1.9, True),
        (
            "exact BackSelect 32x32 seconds per image",
            result["backselect_exact"]["projected_seconds_per_image"],
            "<=",
            1.0,
            cuda,
        ),
    ]
    for b in result["battery"]:
        rows.append((f"battery estimate / measured ({b['model']})", b["ratio"], "within 2x", 2.0, True))
    out = []
    for what, value, op, goal, applies in rows:
        if value is None or not applies:
            met = None
        elif op == ">=":
            met = value >= goal
        elif op == "<=":
            met = value <= goal
        else:
            met = 1 / goal <= value <= goal
        out.append({"target": what, "value": value, "goal": f"{op} {goal}", "met": met})
    return out


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['device']}, {result['mode']} sizes, torch {result['torch']}")
    for key, fwd in result["forward"].items():
        print(f"\n{key}: {fwd['arch']} {result['sizes']['size']} px, {result['sizes']['throughput']} images")
        print(f"{'':44s}{'img/s':>12s}{'vs eager':>10s}{'vs same':>9s}")
        for r in fwd["rows"]:
            same = f"{r['vs_plain_same_path']:9.2f}" if "vs_plain_same_path" in r else ""
            print(f"{r['what']:44s}{r['img_per_s']:12.0f}{r['vs_plain_eager']:10.2f}{same}")
        for label, why in fwd["skipped"].items():
            print(f"{label}: skipped ({why})")
    print("\nbattery (estimate vs measured, seconds)")
    for b in result["battery"]:
        for r in b["audits"]:
            print(
                f"  {b['model']:5s} {r['audit']:18s}{r['estimate_s']:10.2f}{r['measured_s']:10.2f}"
                f"{r['ratio']:8.2f}x"
            )
    print(f"\n{'target':58s}{'value':>10s}  {'goal':12s}met")
    for t in result["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        val = "-" if t["value"] is None else f"{t['value']:.4g}"
        print(f"{t['target']:58s}{val:>10s}  {t['goal']:12s}{met}")
