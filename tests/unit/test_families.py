"""One statement of model families (`auditors.families`), checked against the engine and against every
place that answers from an architecture name: the card allow-list (the CLI and API), the launch form
and its server-side check, and the cost estimate. One representative per naming scheme of every family
the engine supports, SE-ResNet, EVA and BEiT included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from starlette.datastructures import FormData

import auditors.zoo.architectures  # noqa: F401  (registers the tiny architectures with timm)
from auditors.audits.context import AuditContext
from auditors.engine import model_family, native_strategy
from auditors.families import FAMILIES, NATIVE_STRATEGIES, family_of_arch, native_of_arch, patch_rule
from auditors.registry import get_auditor, parse_config
from occulta.estimate import shape_of_card, shape_of_context

# arch -> the kwargs that keep it small to build (no weights are downloaded)
REPRESENTATIVES: dict[str, dict[str, Any]] = {
    "occulta_vit_tiny": {},
    "vit_tiny_patch16_224": {"depth": 1},
    "deit_tiny_patch16_224": {"depth": 1},
    "deit3_small_patch16_224": {"depth": 1},
    "eva_giant_patch14_224": {"depth": 1, "embed_dim": 64, "num_heads": 2},
    "eva02_tiny_patch14_224": {"depth": 1},
    "beit_base_patch16_224": {"depth": 1, "embed_dim": 64, "num_heads": 2},
    "beitv2_base_patch16_224": {"depth": 1, "embed_dim": 64, "num_heads": 2},
    "swin_tiny_patch4_window7_224": {"depths": (1, 1, 1, 1)},
    "occulta_resnet_tiny": {},
    "resnet10t": {},
    "wide_resnet50_2": {"layers": (1, 1, 1, 1)},
    "seresnet18": {},
    "convnext_atto": {},
    "convnextv2_atto": {},
    "efficientnet_b0": {},
    "tf_efficientnet_b0": {},
    "mobilenetv3_small_050": {},
    "regnetx_002": {},
    "regnety_002": {},
}


def test_every_prefix_of_the_table_has_a_representative() -> None:
    for row in FAMILIES:
        for prefix in row.prefixes:
            assert any(
                a.startswith(prefix) and family_of_arch(a)[0] == row.family for a in REPRESENTATIVES
            ), prefix


@pytest.fixture(scope="module", params=sorted(REPRESENTATIVES))
def built(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    arch = request.param
    torch.manual_seed(0)
    return arch, timm.create_model(arch, pretrained=False, num_classes=4, **REPRESENTATIVES[arch]).eval()


def test_the_table_agrees_with_the_engine(built: tuple[str, torch.nn.Module], tmp_path: Path) -> None:
    """The engine (from the built modules) and the table (from the name) agree, and so do the shapes
    a local run (`occulta audit --budget`, from the loaded model) and the API (from the card) estimate."""
    arch, model = built
    family, vit_patch = family_of_arch(arch)
    assert model_family(model) == family
    assert native_strategy(model) == native_of_arch(arch)
    if family == "vit" and vit_patch is not None:
        from auditors.engine import vit_patch_size

        assert vit_patch_size(model) == vit_patch
    ctx = AuditContext(
        model=model,
        images=torch.zeros(1, 3, 224, 224),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=["a", "b", "c", "d"],
        out_dir=tmp_path,
    )
    local = shape_of_context(ctx)
    remote = shape_of_card({"arch": arch, "input_size": [3, 224, 224]}, 1, num_classes=4)
    assert (local.family, local.default_patch) == (remote.family, remote.default_patch)


@pytest.mark.parametrize("arch", sorted(REPRESENTATIVES))
def test_every_face_of_the_product_agrees_on_the_family(arch: str) -> None:
    from api.dashboard.launch import _config, native_of
    from occulta.cards import parse_card

    family, _ = family_of_arch(arch)
    native = native_of_arch(arch)
    assert native is not None, "every family the engine supports has a native strategy"
    # The card allow-list (what `occulta audit`/`submit` and POST /v1/models accept).
    card = {
        "arch": arch,
        "class_names": ["a", "b", "c", "d"],
        "weights": "w.safetensors",
        "input_size": [3, 224, 224],
    }
    parse_card(json.dumps(card))
    # The launch form: its lookup for an uploaded card, and its server-side check.
    assert json.loads(native_of(arch, None).body) == {"arch": arch, "family": family, "native": native}  # type: ignore[arg-type]
    config = _config(FormData([("strategies", "black"), ("strategies", native)]), ["missingness_bias"], arch)
    assert config["missingness_bias"]["strategies"] == ["black", native]
    (other,) = [s for s in NATIVE_STRATEGIES if s != native]
    with pytest.raises(
        Exception, match=f"{other} does not apply to {arch}: it supports pixel fills and {native}"
    ):
        _config(FormData([("strategies", other)]), ["missingness_bias"], arch)
    # The cost estimate counts the native passes of this family.
    shape = shape_of_card(card, 40, num_classes=4)
    assert shape.family == family
    passes = get_auditor("missingness_bias").forward_passes(parse_config("missingness_bias", {}), shape)
    assert passes is not None and passes.native > 0


def test_the_patch_rule_is_the_ones_the_context_and_the_estimate_use() -> None:
    assert patch_rule(224, 224, 14) == 14 and patch_rule(224, 224, None) == 16 and patch_rule(32, 32) == 4
    assert patch_rule(225, 225, 16) == 28  # neither the ViT's patch nor 16 tiles it: side/8
