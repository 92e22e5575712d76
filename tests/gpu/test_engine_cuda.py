"""The engine on a real GPU: bf16 + channels-last agrees with the fp32 CPU path, chunks fit memory."""

from __future__ import annotations

import pytest
import timm
import torch

import auditors.zoo.architectures  # noqa: F401
from auditors.engine import _CHUNK_CACHE, applicable_strategies, masked_logits, plain_logits, prepare_model

pytestmark = pytest.mark.gpu
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.mark.parametrize("arch", ["occulta_resnet_tiny", "occulta_vit_tiny", "resnet18"])
def test_cuda_bf16_agrees_with_cpu_fp32_on_every_strategy(arch):
    torch.manual_seed(0)
    cpu = timm.create_model(arch, num_classes=10).eval()
    gpu = prepare_model(timm.create_model(arch, num_classes=10).eval(), "cuda")
    gpu.load_state_dict(cpu.state_dict())
    images = torch.rand(64, 3, 32, 32)
    keep = torch.rand(64, 4, 4) > 0.4
    for strategy in applicable_strategies(cpu):
        a = masked_logits(cpu, images, keep, strategy, mean=MEAN, std=STD, seed=1)
        b = masked_logits(gpu, images, keep, strategy, mean=MEAN, std=STD, seed=1)
        assert b.device.type == "cuda" and b.dtype == torch.float32
        if strategy in ("noise", "random_color"):
            continue  # CPU and CUDA generators draw different numbers for the same seed
        agree = (a.argmax(1) == b.cpu().argmax(1)).float().mean()
        assert agree >= 0.9, (strategy, float(agree))
        torch.testing.assert_close(b.cpu(), a, atol=0.15, rtol=0.1, msg=strategy)


def test_chunks_are_sized_from_free_memory_and_many_ablations_fit():
    model = prepare_model(timm.create_model("resnet50", num_classes=1000), "cuda")
    image = torch.rand(1, 3, 224, 224)
    keep = torch.rand(3000, 14, 14) > 0.5
    torch.cuda.reset_peak_memory_stats()
    out = masked_logits(model, image, keep, "black", mean=MEAN, std=STD)
    assert out.shape == (3000, 1000)
    chunk = [v for k, v in _CHUNK_CACHE.items() if k[0] == id(model)]
    assert chunk and chunk[0] > 8
    _, total = torch.cuda.mem_get_info()
    assert torch.cuda.max_memory_allocated() < total
    ref = plain_logits(model, image, mean=MEAN, std=STD)
    keep_all = torch.ones(1, 14, 14, dtype=torch.bool)
    torch.testing.assert_close(masked_logits(model, image, keep_all, "black", mean=MEAN, std=STD), ref)
