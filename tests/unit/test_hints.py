"""Typos in what a user writes get the nearest valid spelling, before anything heavy is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from occulta.cards import parse_card
from occulta.errors import CardError

CARD = "arch: {arch}\nweights: m.safetensors\ninput_size: [3, 32, 32]\n{extra}class_names: [a, b]\n"


def card_error(arch: str = "occulta_resnet_tiny", extra: str = "mean: [0.5, 0.5, 0.5]\n") -> str:
    with pytest.raises(CardError) as info:
        parse_card(CARD.format(arch=arch, extra=extra))
    return str(info.value)


def test_misspelt_card_key_names_the_key_it_is_closest_to() -> None:
    assert "unknown key `mena` (did you mean mean?)" in card_error(extra="mena: [0.5, 0.5, 0.5]\n")


def test_misspelt_project_architecture_is_caught_without_torch_with_a_hint() -> None:
    assert "unknown architecture 'occulta_resnet_tinyy' (did you mean occulta_resnet_tiny?)" in card_error(
        arch="occulta_resnet_tinyy"
    )


def test_the_project_architecture_list_matches_what_the_zoo_registers() -> None:
    code = (
        "import timm, auditors.archs as a\n"
        "try:\n    import auditors.zoo.architectures\nexcept ImportError:\n    import auditors.models\n"
        "print(sorted(n for n in a.OCCULTA_ARCHS if not timm.is_model(n)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_card_typo_is_reported_without_importing_torch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    card = tmp_path / "card.yaml"
    card.write_text(CARD.format(arch="occulta_resnet_tinyy", extra=""))
    code = (
        "import sys; from occulta.cards import load_card\n"
        f"try: load_card({str(card)!r})\nexcept Exception as e: print(e)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "did you mean occulta_resnet_tiny?" in out and out.strip().endswith("False")
