"""The launch form offers token_drop only to the transformer families and layer_mask only to the CNN
ones, and refuses a mismatch with a sentence, decided from the architecture name (no model is built)."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from api.dashboard.launch import _config
from auditors.families import native_of_arch as native_strategy
from occulta.errors import AuditConfigError


@pytest.mark.parametrize(
    ("arch", "native"),
    [("vit_tiny_patch16_224", "token_drop"), ("deit_small_patch16_224", "token_drop"),
     ("occulta_vit_tiny", "token_drop"), ("resnet50", "layer_mask"), ("occulta_resnet_tiny", "layer_mask"),
     ("convnext_tiny", "layer_mask"), ("efficientnet_b0", "layer_mask"), ("seresnet18", "layer_mask"),
     ("eva02_tiny_patch14_224", "token_drop"), ("beitv2_base_patch16_224", "token_drop"),
     ("swin_tiny_patch4_window7_224", "token_drop"), ("densenet121", None)],
)  # fmt: skip
def test_native_strategy_follows_the_architecture_family(arch: str, native: str | None) -> None:
    assert native_strategy(arch) == native


def test_token_drop_for_a_resnet_is_refused_with_what_applies() -> None:
    form = FormData([("strategies", "black"), ("strategies", "token_drop")])
    with pytest.raises(AuditConfigError) as info:
        _config(form, ["missingness_bias"], "resnet50")
    assert str(info.value) == "token_drop does not apply to resnet50: it supports pixel fills and layer_mask"


def test_the_native_strategy_of_the_model_is_accepted() -> None:
    form = FormData([("strategies", "black"), ("strategies", "token_drop")])
    config = _config(form, ["missingness_bias"], "vit_tiny_patch16_224")
    assert config["missingness_bias"]["strategies"] == ["black", "token_drop"]
