"""Model cards: a small JSON/YAML file naming the architecture, the weights and the preprocessing.

Security (docs/architecture.md, "Security"): the architecture comes from an allow-list, never from the file; weights are
safetensors or a state dict read with `torch.load(weights_only=True)`, so a pickled module or a
pickle with a payload is refused without executing anything. Every problem is one clear line.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from auditors.archs import ALLOWED_ARCH_PATTERNS
from occulta.errors import CardError, WeightsError

if TYPE_CHECKING:
    from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# The usual wrappers around a state dict (timm's checkpoint helpers read the same ones).
STATE_DICT_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model")
_ALLOWED_ARCH_KWARGS = {
    "num_classes",
    "img_size",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "global_pool",
    "in_chans",
    "drop_rate",
    "class_token",
    "reg_tokens",
}


class ModelCard(BaseModel):
    """What Occulta needs to rebuild and feed a model. `weights` is relative to the card's folder."""

    model_config = ConfigDict(extra="forbid")

    arch: str = Field(examples=["resnet50", "vit_small_patch16_224", "occulta_resnet_tiny"])
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, examples=[{"num_classes": 4}])
    weights: str = Field(examples=["model.safetensors"])
    input_size: tuple[int, int, int] = Field(examples=[(3, 224, 224)])
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = Field(default=1.0, gt=0.0, le=1.0)
    class_names: list[str] = Field(min_length=2)
    name: str | None = None

    @field_validator("arch")
    @classmethod
    def _arch_allowed(cls, v: str) -> str:
        if not any(fnmatch.fnmatchcase(v, p) for p in ALLOWED_ARCH_PATTERNS):
            raise ValueError(
                f"architecture {v!r} is not on the allow-list ({', '.join(ALLOWED_ARCH_PATTERNS)})"
            )
        return v

    @field_validator("arch_kwargs")
    @classmethod
    def _kwargs_allowed(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - _ALLOWED_ARCH_KWARGS)
        if bad:
            raise ValueError(f"arch_kwargs {bad} not allowed; allowed: {sorted(_ALLOWED_ARCH_KWARGS)}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights_name(cls, v: str) -> str:
        if not v.endswith(WEIGHT_SUFFIXES):
            raise ValueError(f"weights must end with one of {', '.join(WEIGHT_SUFFIXES)}")
        if v.startswith("/") or ".." in Path(v).parts:
            raise ValueError("weights must be a path relative to the card, without '..'")
        return v

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError("std values must be > 0")
        return v

    @model_validator(mode="after")
    def _classes_match(self) -> ModelCard:
        n = self.arch_kwargs.get("num_classes")
        if n is not None and n != len(self.class_names):
            raise ValueError(f"arch_kwargs.num_classes={n} but {len(self.class_names)} class_names")
        if self.input_size[0] != 3:
            raise ValueError("input_size must be [3, H, W] (RGB models)")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def weights_format(self) -> str:
        return "safetensors" if self.weights.endswith(".safetensors") else "state_dict"


def _one_line(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "card"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_card(text: str, *, source: str = "card") -> ModelCard:
    """Parse card text (JSON or YAML; YAML is a superset) into a validated `ModelCard`."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CardError(f"{source} is not valid JSON/YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise CardError(f"{source} must be a mapping with keys arch, weights, input_size, class_names, ...")
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise CardError(f"{source}: {_one_line(exc)}") from None


def load_card(path: Path | str) -> ModelCard:
    path = Path(path)
    if not path.is_file():
        raise CardError(f"model card {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"cannot read model card {path}: {exc}") from None
    return parse_card(text, source=f"model card {path.name}")


def weights_path(card: ModelCard, card_path: Path | str) -> Path:
    return Path(card_path).parent / card.weights


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, Any]:
    """Read weights without executing code: safetensors, or a weights-only torch pickle."""
    import pickle

    import torch

    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path.name} is not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" (it references {found.group(1)})" if found else ""
        raise WeightsError(
            f"{path.name} is not a plain state dict: a pickled object{what} was refused without running it; "
            "save model.state_dict() or use safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path.name} is corrupt or truncated ({str(exc).splitlines()[0][:160]})"
        ) from None
    for key in STATE_DICT_WRAPPERS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path.name} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_model(card: ModelCard) -> nn.Module:
    """Instantiate the card's architecture (random weights) from timm's registry."""
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the project's own architectures)

    if not timm.is_model(card.arch):
        raise CardError(f"unknown architecture {card.arch!r}: not a timm model name")
    kwargs = {"num_classes": card.num_classes, **card.arch_kwargs}
    try:
        model: nn.Module = timm.create_model(card.arch, pretrained=False, **kwargs)
    except TypeError as exc:
        raise CardError(f"arch_kwargs do not fit {card.arch}: {exc}") from None
    return model


def _check_shapes(model: nn.Module, state: dict[str, Any], arch: str) -> None:
    own = model.state_dict()
    for k, v in state.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            raise WeightsError(
                f"weights do not fit {arch}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )


def load_model(card: ModelCard, card_path: Path | str, device: str = "cpu") -> nn.Module:
    """The card's model with its weights, in eval mode on `device`."""
    model = build_model(card)
    state = read_state_dict(weights_path(card, card_path))
    _check_shapes(model, state, card.arch)
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise WeightsError(f"weights do not fit {card.arch}: " + "; ".join(problems))
    return model.eval().to(device)


def validate_model(card_path: Path | str) -> ModelCard:
    """Load card + weights on the CPU and run one forward pass: what an upload must survive."""
    import torch

    card = load_card(card_path)
    model = load_model(card, card_path)
    with torch.no_grad():
        out = model(torch.zeros(1, *card.input_size))
    if out.shape[-1] != card.num_classes:
        raise CardError(f"model outputs {out.shape[-1]} classes but the card names {card.num_classes}")
    return card


def write_card(card: ModelCard, path: Path) -> None:
    path.write_text(json.dumps(card.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
