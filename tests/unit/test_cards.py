"""Model cards and checkpoints: every problem is one clear error, and nothing is ever executed."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import auditors.zoo.architectures  # noqa: F401
from occulta.cards import ModelCard, load_card, load_model, parse_card, validate_model, write_card
from occulta.errors import CardError, WeightsError


def _card(tmp: Path, weights: str = "w.safetensors", **over) -> Path:
    raw = {
        "arch": "occulta_resnet_tiny",
        "arch_kwargs": {"num_classes": 3},
        "weights": weights,
        "input_size": [3, 32, 32],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "class_names": ["a", "b", "c"],
        **over,
    }
    path = tmp / "card.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture()
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model("occulta_resnet_tiny", num_classes=3).state_dict()


def test_safetensors_and_wrapped_state_dicts_load_to_the_same_model(tmp_path, state):
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict_ema": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    a = load_model(load_card(_card(tmp_path)), tmp_path / "card.json")
    b_card = _card(tmp_path, weights="w.pth")
    b = load_model(load_card(b_card), b_card)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x))
    assert validate_model(b_card).num_classes == 3


def test_yaml_cards_are_accepted(tmp_path, state):
    save_file(state, str(tmp_path / "w.safetensors"))
    (tmp_path / "card.yaml").write_text(
        "arch: occulta_resnet_tiny\nweights: w.safetensors\ninput_size: [3, 32, 32]\nclass_names: [a, b, c]\n"
    )
    assert load_card(tmp_path / "card.yaml").mean == (0.485, 0.456, 0.406)


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_with_a_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    with (tmp_path / "w.pth").open("wb") as f:
        pickle.dump({"state_dict": Payload(str(marker))}, f)
    card = _card(tmp_path, weights="w.pth")
    with pytest.raises(WeightsError, match="refused without running it"):
        load_model(load_card(card), card)
    assert not marker.exists()


def test_a_pickled_module_is_refused(tmp_path):
    torch.save(timm.create_model("occulta_resnet_tiny", num_classes=3), tmp_path / "w.pth")
    card = _card(tmp_path, weights="w.pth")
    with pytest.raises(WeightsError, match=r"save model.state_dict\(\) or use safetensors"):
        load_model(load_card(card), card)


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_corrupt_or_truncated_weights_are_named(tmp_path, state, suffix):
    path = tmp_path / f"w.{suffix}"
    if suffix == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    card = _card(tmp_path, weights=path.name)
    with pytest.raises(WeightsError, match=f"w.{suffix}"):
        load_model(load_card(card), card)


def test_weights_for_another_architecture_say_which_tensor_does_not_fit(tmp_path):
    other = timm.create_model("occulta_resnet_tiny", num_classes=7).state_dict()
    save_file(other, str(tmp_path / "w.safetensors"))
    card = _card(tmp_path)
    with pytest.raises(
        WeightsError, match=r"fc.(weight|bias) has shape \(7(, 128)?,?\), expected \(3(, 128)?,?\)"
    ):
        load_model(load_card(card), card)
    vit = timm.create_model("occulta_vit_tiny", num_classes=3).state_dict()
    save_file(vit, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="weights do not fit occulta_resnet_tiny"):
        load_model(load_card(card), card)


def test_a_vit_trained_at_another_size_is_told_to_say_its_img_size_and_then_loads(tmp_path):
    vit = timm.create_model("occulta_vit_tiny", num_classes=3, img_size=64).state_dict()
    save_file(vit, str(tmp_path / "w.safetensors"))
    card = _card(tmp_path, arch="occulta_vit_tiny", input_size=[3, 64, 64])
    with pytest.raises(WeightsError, match=r"pos_embed .*arch_kwargs.img_size = 64 \(its input_size\)"):
        load_model(load_card(card), card)
    card = _card(
        tmp_path,
        arch="occulta_vit_tiny",
        input_size=[3, 64, 64],
        arch_kwargs={"num_classes": 3, "img_size": 64},
    )
    assert load_model(load_card(card), card)(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"arch": "os.system"}, "not on the allow-list"),
        ({"arch": "resnet_does_not_exist"}, "unknown architecture"),
        ({"surprise": 1}, "unknown key `surprise`"),
        ({"arch_kwargs": {"num_classes": 3, "block_fn": "x"}}, "block_fn"),
        ({"class_names": ["only-one"]}, "class_names"),
        ({"arch_kwargs": {"num_classes": 5}}, "num_classes=5 but 3 class_names"),
        ({"weights": "../../etc/passwd.pt"}, "without '..'"),
        ({"weights": "model.exe"}, "weights must end with"),
    ],
)
def test_bad_cards_get_one_line_naming_the_problem(tmp_path, state, override, message):
    save_file(state, str(tmp_path / "w.safetensors"))
    card = _card(tmp_path, **override)
    with pytest.raises(CardError, match=message) as info:
        validate_model(card)
    assert "\n" not in str(info.value)


def test_missing_keys_of_a_card_are_listed():
    with pytest.raises(CardError, match="weights: Field required"):
        parse_card('{"arch": "occulta_resnet_tiny", "input_size": [3, 32, 32], "class_names": ["a", "b"]}')
    with pytest.raises(CardError, match="not valid JSON/YAML"):
        parse_card("arch: [unclosed")


def test_the_cli_prints_one_error_line_and_no_traceback(tmp_path):
    torch.save(timm.create_model("occulta_resnet_tiny", num_classes=3), tmp_path / "w.pth")
    card = _card(tmp_path, weights="w.pth")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "occulta",
            "audit",
            "--model",
            str(card),
            "--data",
            "synthetic:shapes?classes=3&n=8",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        "error: w.pth is not a plain state dict: a pickled object (it references timm.models.resnet.ResNet)"
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_write_card_round_trips(tmp_path):
    card = ModelCard(
        arch="occulta_vit_tiny", weights="v.safetensors", input_size=(3, 32, 32), class_names=["x", "y"]
    )
    write_card(card, tmp_path / "c.json")
    assert load_card(tmp_path / "c.json") == card
