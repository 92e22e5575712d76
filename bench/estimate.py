"""The cost estimate against the measured time, on the demo models and a ResNet-50 at 224 px.

    python -m bench.estimate [--device auto|cpu|cuda] [--skip-resnet50]

Each row runs a whole battery through `run_battery` (the path `occulta audit` takes), records the
estimate its plan hook computed after calibrating (passes per audit x measured seconds per pass, plus
plots), and each audit's measured seconds from the report. The goal is within 2x, per battery. The
demo rows use the demo's own trained models, sample and settings; the ResNet-50 row uses random
weights (speed does not depend on them) and, on a CPU, a small sample and small settings.
Writes bench/results/estimate.json (estimate_cpu.json on a CPU) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

import auditors.zoo.architectures  # noqa: F401
from auditors.cost import Estimate
from bench.common import device_label
from occulta.cards import ModelCard, write_card
from occulta.demo import DEMO_SAMPLES, MEAN, STD, demo_battery, task_ref, train_demo_model
from occulta.estimate import planner
from occulta.runner import resolve_device, run_battery

# ResNet-50 at 224 px on a CPU: every audit, sized to take about a minute in all.
RESNET50_CPU: dict[str, dict[str, Any]] = {
    "missingness_bias": {"fractions": [0.0, 0.5]},
    "lime_consistency": {"n_images": 1, "n_samples": 32, "fills": ["black", "grey"], "max_k": 10},
    "sis": {"n_images": 1, "method": "gradient", "gradient_k": 5000},
    "spurious_signal": {
        "n_images": 8,
        "methods": ["gradient_squared"],
        "patch_size": 56,
        "discovery_window": 112,
        "max_candidates": 1,
    },
}


def resnet50_card(folder: Path) -> Path:
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=4)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "r50.safetensors"))
    card = ModelCard(
        arch="resnet50",
        arch_kwargs={"num_classes": 4},
        weights="r50.safetensors",
        input_size=(3, 224, 224),
        mean=MEAN,
        std=STD,
        class_names=["circle", "square", "triangle", "cross"],
        name="resnet50 (random weights)",
    )
    write_card(card, folder / "r50.json")
    return folder / "r50.json"


def measure(
    name: str, card: Path, data_ref: str, configs: dict[str, Any], samples: int, device: str, out: Path
) -> dict[str, Any]:
    seen: list[Estimate] = []
    t0 = time.perf_counter()
    report = run_battery(
        card_path=card,
        data_ref=data_ref,
        audits=demo_battery(None)[0],
        audit_configs=configs,
        out_dir=out,
        device=device,
        samples=samples,
        plan=planner(None, seen.append),
    )
    wall = time.perf_counter() - t0
    est = seen[0]
    rows = []
    for result in report.audits:
        e = est.audits[result.name]["seconds"] or 0.0
        rows.append(
            {
                "audit": result.name,
                "verdict": result.verdict,
                "forward_passes": est.audits[result.name]["forward_passes"],
                "estimate_s": e,
                "measured_s": result.seconds,
                "ratio": round(e / result.seconds, 3) if result.seconds else None,
            }
        )
    measured = sum(r["measured_s"] or 0.0 for r in rows)
    total = est.seconds or 0.0
    return {
        "battery": name,
        "images": report.dataset.n_images,
        "image_size": report.dataset.image_size,
        "configs": configs,
        "calibration": est.as_dict()["calibration"],
        "calibration_seconds": round(est.calibration.seconds, 3) if est.calibration else None,
        "audits": rows,
        "estimate_s": round(total, 3),
        "measured_s": round(measured, 3),
        "wall_s": round(wall, 3),
        "ratio": round(total / measured, 3) if measured else None,
        "within_2x": bool(measured and 0.5 <= total / measured <= 2.0),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-resnet50", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    rows = []
    with tempfile.TemporaryDirectory(prefix="occulta-estimate-") as tmp:
        work = Path(tmp)
        for key in ("cnn", "vit"):
            card = train_demo_model(key, work / "models", seed=0, device=device)
            data = task_ref("square", n=2000, seed=1000)
            configs = demo_battery(None)[1]
            rows.append(measure(f"demo {key}", card, data, configs, DEMO_SAMPLES, device, work / key))
        if not args.skip_resnet50:
            card = resnet50_card(work)
            data = "synthetic:shapes?classes=4&size=224&n=64&artifact=square&seed=7"
            configs = {} if cuda else RESNET50_CPU
            rows.append(
                measure("resnet50 224px", card, data, configs, 500 if cuda else 8, device, work / "r50")
            )
    result = {"device": device_label(device), "torch": torch.__version__, "rows": rows}
    print(f"\n{result['device']}")
    print(f"{'battery':16s}{'audit':20s}{'passes':>10s}{'estimate':>10s}{'measured':>10s}{'ratio':>8s}")
    for r in rows:
        for a in r["audits"]:
            print(
                f"{r['battery']:16s}{a['audit']:20s}{a['forward_passes'] or 0:10d}"
                f"{a['estimate_s']:10.2f}{a['measured_s'] or 0:10.2f}{a['ratio'] or 0:8.2f}"
            )
        print(
            f"{r['battery']:16s}{'total':20s}{'':10s}{r['estimate_s']:10.2f}{r['measured_s']:10.2f}{r['ratio']:8.2f}"
        )
    out = args.out or Path("bench/results") / ("estimate.json" if cuda else "estimate_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
