"""GPU memory that adapts instead of failing, tested on the CPU by injecting out-of-memory: a forward
hook raises `torch.cuda.OutOfMemoryError` on batches above a size, as a small card would. The engine
halves and goes on with the same answers; the battery completes with the verdicts of an unconstrained
run and the report's environment records what happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from auditors.engine import batching, masked_logits, plain_logits
from auditors.report import AuditResult, Report
from occulta.runner import load_prepared, run_battery, run_fitting
from tests.fixtures.models import write_planted_card

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def small_card(model: nn.Module, largest: int) -> Any:
    """Make `model` run out of memory, as a GPU would, on any batch above `largest` images."""

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if args[0].shape[0] > largest:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected: batch {args[0].shape[0]})")

    return model.register_forward_pre_hook(hook)


@pytest.fixture(autouse=True)
def no_events() -> Iterator[None]:
    batching.drain_events()
    yield
    batching.drain_events()


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def test_the_engine_halves_on_out_of_memory_and_returns_the_same_logits() -> None:
    images, keep = torch.rand(40, 3, 16, 16), torch.rand(40, 4, 4) > 0.5
    model = net()
    free = masked_logits(model, images, keep, "noise", mean=MEAN, std=STD, seed=3, chunk_size=32)
    free_plain = plain_logits(model, images, mean=MEAN, std=STD, chunk_size=32)
    tight = net()
    small_card(tight, largest=5)
    got = masked_logits(tight, images, keep, "noise", mean=MEAN, std=STD, seed=3, chunk_size=32)
    assert torch.allclose(got, free, atol=1e-6)  # the seeded fill does not depend on the chunking
    assert batching.drain_events() == [
        "out of memory at a batch of 32 on cpu; continued at 16",
        "out of memory at a batch of 16 on cpu; continued at 8",
        "out of memory at a batch of 8 on cpu; continued at 4",
    ]
    # The lesson is kept: the next call starts at the size that fit, with no new error.
    assert torch.allclose(
        plain_logits(tight, images, mean=MEAN, std=STD, chunk_size=32), free_plain, atol=1e-6
    )
    assert batching.drain_events() == []


def test_a_single_image_that_does_not_fit_is_raised() -> None:
    model = net()
    small_card(model, largest=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        plain_logits(model, torch.rand(4, 3, 8, 8), mean=MEAN, std=STD)


BATTERY = ["missingness_bias", "lime_consistency"]
CONFIGS: dict[str, dict[str, Any]] = {
    "missingness_bias": {"strategies": ["black", "grey"]},
    "lime_consistency": {"n_images": 4, "n_samples": 200},
}


def _run(card: Path, data_ref: str, out: Path, largest: int | None) -> Report:
    def loader(card_obj: Any, card_path: Path, device: str) -> nn.Module:
        model = load_prepared(card_obj, card_path, device)
        if largest is not None:
            small_card(model, largest)
        return model

    return run_battery(
        card_path=card,
        data_ref=data_ref,
        audits=BATTERY,
        audit_configs=CONFIGS,
        out_dir=out,
        samples=64,
        seed=0,
        model_loader=loader,
    )


def test_an_audit_on_a_card_too_small_for_its_batches_completes_with_the_same_verdicts(
    planted_resnet: Any, tmp_path: Path
) -> None:
    card = write_planted_card(planted_resnet, tmp_path, name="planted")
    data_ref = planted_resnet.test.spec.with_(n=200, seed=4242).ref()
    free = _run(card, data_ref, tmp_path / "free", largest=None)
    tight = _run(card, data_ref, tmp_path / "tight", largest=8)
    assert [a.verdict for a in tight.audits] == [a.verdict for a in free.audits]
    assert all(a.verdict != "error" for a in tight.audits), [a.error for a in tight.audits]
    assert free.environment.memory == []
    assert tight.environment.memory and all("out of memory" in e for e in tight.environment.memory)
    assert tight.environment.memory[-1].endswith("continued at 8")
    saved = Report.model_validate_json((tmp_path / "tight" / "report.json").read_text())
    assert saved.environment.memory == tight.environment.memory


class OnceTooBig:
    """An audit whose own tensors run out of GPU memory the first time (not the engine's batches)."""

    name = "once_too_big"

    def __init__(self) -> None:
        self.calls = 0

    def run(self, ctx: Any, config: Any) -> AuditResult:
        self.calls += 1
        if self.calls == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return AuditResult(name=self.name, verdict="pass", summary="ran")


class Ctx:
    def __init__(self) -> None:
        self.model = net()


def test_an_audit_that_runs_out_of_memory_outside_the_batches_is_rerun_not_failed() -> None:
    auditor, ctx = OnceTooBig(), Ctx()
    result = run_fitting(auditor, ctx, None)  # type: ignore[arg-type]
    assert result.verdict == "pass" and auditor.calls == 2
    (event,) = batching.drain_events()
    assert event.startswith("once_too_big: out of memory on cpu") and event.endswith("re-run on the CPU")
