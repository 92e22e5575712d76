"""Native missingness of every family on a GPU: bf16 + channels-last agrees with fp32 on the CPU."""

from __future__ import annotations

import pytest
import timm
import torch

from auditors.engine import masked_logits, native_strategy, plain_logits, prepare_model

pytestmark = pytest.mark.gpu
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.mark.parametrize(
    "arch",
    [
        "resnet50",
        "vit_small_patch16_224",
        "deit_small_distilled_patch16_224",
        "convnext_tiny",
        "convnextv2_atto",
        "efficientnet_b0",
        "mobilenetv3_large_100",
        "regnety_008",
        "swin_tiny_patch4_window7_224",
    ],
)
def test_native_strategy_in_bf16_channels_last_agrees_with_cpu_fp32(arch):
    torch.manual_seed(0)
    cpu = timm.create_model(arch, pretrained=False, num_classes=10).eval()
    gpu = prepare_model(timm.create_model(arch, pretrained=False, num_classes=10).eval(), "cuda")
    gpu.load_state_dict(cpu.state_dict())
    strategy = native_strategy(cpu)
    assert strategy is not None and native_strategy(gpu) == strategy
    images = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    keep = torch.rand(8, 14, 14, generator=torch.Generator().manual_seed(2)) > 0.5
    keep[0] = True  # nothing removed: the masked pass is the plain one in bf16 too

    a = masked_logits(cpu, images, keep, strategy, mean=MEAN, std=STD)
    b = masked_logits(gpu, images, keep, strategy, mean=MEAN, std=STD)
    assert b.device.type == "cuda" and b.dtype == torch.float32 and torch.isfinite(b).all()
    scale = float(a.abs().max().clamp_min(1e-3))
    torch.testing.assert_close(b.cpu(), a, atol=0.1 * scale, rtol=0.1, msg=strategy)
    plain = plain_logits(gpu, images[:1], mean=MEAN, std=STD)
    torch.testing.assert_close(b[:1], plain, atol=0.05 * scale, rtol=0.05)
    # Removed pixels cannot change the bf16 result either.
    px = keep.repeat_interleave(16, 1).repeat_interleave(16, 2).unsqueeze(1)
    scrambled = torch.where(px, images, torch.rand_like(images))
    c = masked_logits(gpu, scrambled, keep, strategy, mean=MEAN, std=STD)
    torch.testing.assert_close(c, b, atol=1e-3 * scale, rtol=0)
