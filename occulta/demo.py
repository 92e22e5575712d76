"""`occulta demo`: train two tiny models on a task with a planted shortcut, audit both, write reports.

The task (`auditors.zoo.synthetic`): four shape classes; every "circle" image carries a black square in
its bottom-right corner. A CNN (timm ResNet, layer masking applies) and a ViT (token dropping applies)
learn it in seconds on a CPU, and a second CNN trained without the square is the clean control. The
audits then show what the research predicts: black-fill removal looks like the shortcut and drags
predictions toward "circle" while the native strategies do not, and the spurious-signal audit finds
the corner box on the planted models and nothing on the clean one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from occulta.cards import ModelCard, write_card

if TYPE_CHECKING:
    from auditors.report import Report

TASK = "synthetic:shapes?classes=4&size=32&n={n}&artifact={artifact}&artifact_class=0&fraction=1&seed={seed}"
# timm's ImageNet statistics, so the `mean` fill (the model's mean colour) differs from `grey` (0.5).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# name -> architecture, training and the artifact it is trained with ("none" = the clean control).
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "cnn": {"arch": "occulta_resnet_tiny", "epochs": 4, "lr": 3e-3, "artifact": "square"},
    "vit": {"arch": "occulta_vit_tiny", "epochs": 10, "lr": 5e-4, "artifact": "square"},
    "cnn-clean": {"arch": "occulta_resnet_tiny", "epochs": 4, "lr": 3e-3, "artifact": "none"},
}
TRAIN_IMAGES = 6000
EVAL_IMAGES = 2000
# Float sums split across threads round differently with each thread count, so the demo pins it: the
# same seed on the same CPU kernel family with the same library versions gives the same report.json
# (timestamps and timings aside), and the README's table names all four.
DEMO_THREADS = 2
# The battery is every built-in audit, each sized by its own `AuditInfo.demo_config` so the whole demo
# (three models, four audits each) runs in about two minutes on 2 CPU cores.
DEMO_SAMPLES = 300


def task_ref(artifact: str, *, n: int, seed: int) -> str:
    return TASK.format(n=n, artifact=artifact, seed=seed)


def pin_threads() -> None:
    """`DEMO_THREADS` intra-op threads and one inter-op thread, whatever the machine's core count."""
    import torch

    torch.set_num_threads(DEMO_THREADS)
    if torch.get_num_interop_threads() != 1:
        # fixed for good once parallel work ran in this process; the intra-op count is what rounds
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def train_demo_model(
    key: str,
    models_dir: Path,
    *,
    seed: int,
    device: str,
    train_images: int = TRAIN_IMAGES,
    epochs: int | None = None,
) -> Path:
    """Train one demo model, save safetensors + card, return the card path (smaller sizes: tests)."""
    import timm
    import torch
    from safetensors.torch import save_file

    import auditors.zoo.architectures  # noqa: F401
    from auditors.zoo.synthetic import generate, parse_synthetic
    from auditors.zoo.training import train_classifier

    spec = DEMO_MODELS[key]
    data = generate(parse_synthetic(task_ref(spec["artifact"], n=train_images, seed=1 + seed)))
    torch.manual_seed(seed)
    model = timm.create_model(spec["arch"], num_classes=len(data.class_names)).to(device)
    res = train_classifier(
        model,
        data.images,
        data.labels,
        mean=MEAN,
        std=STD,
        epochs=epochs or spec["epochs"],
        lr=spec["lr"],
        seed=seed,
    )
    models_dir.mkdir(parents=True, exist_ok=True)
    weights = models_dir / f"{key}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = ModelCard(
        arch=spec["arch"],
        arch_kwargs={"num_classes": len(data.class_names)},
        weights=weights.name,
        input_size=(3, 32, 32),
        mean=MEAN,
        std=STD,
        class_names=data.class_names,
        name=f"demo-{key} (train accuracy {res.train_accuracy:.0%})",
    )
    card_path = models_dir / f"{key}.json"
    write_card(card, card_path)
    return card_path


def demo_battery(audits: list[str] | None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The audits to run (default: the built-ins) and their demo configs, validated."""
    from auditors.registry import audit_infos, builtin_infos
    from occulta.runner import validate_battery

    infos = audit_infos()
    battery = audits or [info.name for info in builtin_infos()]
    configs = {
        name: dict(infos[name].demo_config) for name in battery if name in infos and infos[name].demo_config
    }
    validate_battery(battery, configs)
    return battery, configs


def audit_demo_model(
    card: Path,
    out_dir: Path,
    *,
    battery: list[str],
    configs: dict[str, dict[str, Any]],
    device: str,
    seed: int,
    progress: Callable[[float, str], None] | None = None,
    samples: int = DEMO_SAMPLES,
    eval_images: int = EVAL_IMAGES,
) -> Report:
    """Audit one demo model on fresh images of the planted task: the shortcut is there to be found."""
    from occulta.runner import run_battery

    return run_battery(
        card_path=card,
        data_ref=task_ref("square", n=eval_images, seed=1000 + seed),
        audits=battery,
        audit_configs=configs,
        out_dir=out_dir,
        device=device,
        samples=samples,
        seed=seed,
        progress=progress,
    )
