"""torch.compile is opt-in, keeps the model's class (so native strategies still apply) and its outputs."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

import auditors.zoo.architectures  # noqa: F401
from auditors.engine import EngineError, applicable_strategies, masked_logits, plain_logits
from auditors.engine.compiled import compile_model, compile_unavailable, is_compiled

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def test_compiled_model_keeps_its_class_strategies_and_logits():
    torch.manual_seed(0)
    model = timm.create_model("occulta_resnet_tiny", num_classes=4).eval()
    compiled = compile_model(copy.deepcopy(model), backend="eager")
    assert is_compiled(compiled) and not is_compiled(model)
    assert type(compiled) is type(model)
    assert applicable_strategies(compiled) == applicable_strategies(model)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    keep = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5
    torch.testing.assert_close(
        plain_logits(compiled, images, mean=MEAN, std=STD), plain_logits(model, images, mean=MEAN, std=STD)
    )
    for strategy in ("black", "layer_mask"):
        torch.testing.assert_close(
            masked_logits(compiled, images, keep, strategy, mean=MEAN, std=STD),
            masked_logits(model, images, keep, strategy, mean=MEAN, std=STD),
        )


def test_cuda_graphs_are_refused_without_a_cuda_device():
    model = timm.create_model("occulta_resnet_tiny", num_classes=4).eval()
    assert compile_unavailable("cpu", cuda_graphs=True) == "CUDA graphs need a CUDA device"
    with pytest.raises(EngineError, match="CUDA graphs need a CUDA device"):
        compile_model(model, cuda_graphs=True)
    assert not is_compiled(model)
