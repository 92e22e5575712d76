"""Model cards: a small JSON/YAML file naming the architecture, the weights and the preprocessing.

Security (docs/architecture.md, "Security"): the architecture comes from an allow-list, never from the file; weights are
safetensors or a state dict read with `torch.load(weights_only=True)`, so a pickled module or a
pickle with a payload is refused without executing anything. Every problem is one clear line.

Cost: a card is a few hundred bytes that decide how much the server builds. YAML aliases are counted
as they would expand (a 400-byte alias bomb is refused, not expanded), `arch_kwargs` and the input
size are bounded, and the architecture is first built on the `meta` device, where it costs no memory,
so its parameter count and its fit to the uploaded weights are known before anything real is built.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from auditors.archs import ALLOWED_ARCH_PATTERNS, OCCULTA_ARCHS
from occulta.errors import CardError, WeightsError
from occulta.hints import did_you_mean, validation_parts
from occulta.safe_yaml import MAX_DEPTH, YamlBudgetError, load_bounded

if TYPE_CHECKING:
    from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# The usual wrappers around a state dict (timm's checkpoint helpers read the same ones).
STATE_DICT_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model")
# Allowed arch_kwargs and, for the numeric ones, the largest value a card may ask for: enough for
# every model in timm's families, small enough that building one on the meta device is instant.
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
ARCH_KWARG_MAX = {
    "num_classes": 100_000,
    "img_size": 4096,
    "patch_size": 1024,
    "embed_dim": 16_384,
    "depth": 256,
    "num_heads": 256,
    "in_chans": 3,
    "drop_rate": 1,
    "reg_tokens": 64,
}
MAX_INPUT_SIDE = 1024
MAX_TOKENS = 16_384  # (H / patch) x (W / patch) of a ViT-like card
MAX_CLASSES = 100_000
MAX_MODEL_PARAMS = 200_000_000  # ViT-B is 86M, ConvNeXt-L 198M; OCCULTA_MAX_MODEL_PARAMS raises it
MAX_CARD_BYTES = 256 * 1024


class ModelCard(BaseModel):
    """What Occulta needs to rebuild and feed a model. `weights` is relative to the card's folder."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    arch: str = Field(examples=["resnet50", "vit_small_patch16_224", "occulta_resnet_tiny"])
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, examples=[{"num_classes": 4}])
    weights: str = Field(examples=["model.safetensors"])
    input_size: tuple[int, int, int] = Field(examples=[(3, 224, 224)])
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = Field(default=1.0, gt=0.0, le=1.0)
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    name: str | None = Field(default=None, max_length=200)

    @field_validator("arch")
    @classmethod
    def _arch_allowed(cls, v: str) -> str:
        if v.startswith("occulta_") and v not in OCCULTA_ARCHS:
            raise ValueError(f"unknown architecture {v!r}{did_you_mean(v, OCCULTA_ARCHS, cutoff=0.6)}")
        if not any(fnmatch.fnmatchcase(v, p) for p in ALLOWED_ARCH_PATTERNS):
            raise ValueError(
                f"architecture {v!r} is not on the allow-list ({', '.join(ALLOWED_ARCH_PATTERNS)})"
                + did_you_mean(v, OCCULTA_ARCHS, cutoff=0.6)
            )
        return v

    @field_validator("arch_kwargs")
    @classmethod
    def _kwargs_allowed(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - _ALLOWED_ARCH_KWARGS)
        if bad:
            raise ValueError(f"arch_kwargs {bad} not allowed; allowed: {sorted(_ALLOWED_ARCH_KWARGS)}")
        for key, limit in ARCH_KWARG_MAX.items():
            values = v.get(key)
            for x in values if isinstance(values, list | tuple) else [values]:
                if x is None or isinstance(x, str):
                    continue
                if isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= limit:
                    raise ValueError(f"arch_kwargs.{key} must be a number from 0 to {limit}")
        return v

    @field_validator("input_size")
    @classmethod
    def _input_bounded(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(1 <= side <= MAX_INPUT_SIDE for side in v[1:]):
            raise ValueError(f"input_size sides must be from 1 to {MAX_INPUT_SIDE} pixels")
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
        patch = self.arch_kwargs.get("patch_size")
        if isinstance(patch, int) and patch > 0:
            tokens = (self.input_size[1] // patch) * (self.input_size[2] // patch)
            if tokens > MAX_TOKENS:
                raise ValueError(
                    f"input_size / patch_size gives {tokens} tokens, more than the {MAX_TOKENS} allowed"
                )
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def card_error_line(err: ValidationError) -> str:
    """A card's validation errors on one line, an unknown key with its nearest spelling."""
    return "; ".join(validation_parts(err, ModelCard, "card"))


def clean_text(value: str, where: str) -> str:
    """Text every store can hold: a UTF-16 surrogate pair (YAML's way to write an emoji) becomes the
    character; a NUL or a lone surrogate is refused."""
    if "\x00" in value:
        raise CardError(f"{where} contains a NUL character")
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise CardError(f"{where} contains a lone UTF-16 surrogate") from None


def _check_depth(data: Any, source: str) -> None:
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CardError(f"{source} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _clean(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return clean_text(value, where)
    if isinstance(value, float) and not math.isfinite(value):
        raise CardError(f"{where} is {value}; numbers must be finite")
    if isinstance(value, dict):
        return {clean_text(str(k), where): _clean(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_card_data(text: str, *, source: str = "card") -> dict[str, Any]:
    """Card text (JSON or YAML) as plain data, within the size, alias and depth budgets and with text
    every store can hold. JSON, the common case, is read by the C parser; YAML is composed first so
    its expanded size is known before a single value is built."""
    if len(text) > MAX_CARD_BYTES:
        raise CardError(f"{source} is larger than {MAX_CARD_BYTES} bytes")
    try:
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = load_bounded(text)
    except YamlBudgetError as exc:
        raise CardError(f"{source} {exc}") from None
    except yaml.YAMLError as exc:
        raise CardError(f"{source} is not valid JSON/YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise CardError(f"{source} is nested too deeply") from None
    if not isinstance(data, dict):
        raise CardError(f"{source} must be a mapping with keys arch, weights, input_size, class_names, ...")
    _check_depth(data, source)
    cleaned: dict[str, Any] = _clean(data, source)
    return cleaned


def parse_card(text: str, *, source: str = "card") -> ModelCard:
    """Parse card text (JSON or YAML; YAML is a superset) into a validated `ModelCard`."""
    raw = load_card_data(text, source=source)
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise CardError(f"{source}: {card_error_line(exc)}") from None


def load_card(path: Path | str, *, shown_as: str | None = None) -> ModelCard:
    """The card at `path`; errors call it `shown_as` (the name the user gave it) when it was copied."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"model card {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"cannot read model card {path}: {exc}") from None
    return parse_card(text, source=f"model card {shown_as or path.name}")


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


def build_model(card: ModelCard, *, meta: bool = False) -> nn.Module:
    """Instantiate the card's architecture (random weights) from timm's registry; on the `meta`
    device when `meta`, where parameters have shapes but no storage."""
    import timm
    import torch

    import auditors.zoo.architectures  # noqa: F401  (registers the project's own architectures)

    if not timm.is_model(card.arch):
        hint = did_you_mean(card.arch, timm.list_models(), cutoff=0.8)
        raise CardError(f"unknown architecture {card.arch!r}: not a timm model name{hint}")
    kwargs = {"num_classes": card.num_classes, **card.arch_kwargs}
    try:
        if meta:
            with torch.device("meta"):
                model: nn.Module = timm.create_model(card.arch, pretrained=False, **kwargs)
        else:
            model = timm.create_model(card.arch, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise CardError(f"arch_kwargs do not fit {card.arch}: {str(exc).splitlines()[0][:200]}") from None
    return model


def check_architecture(card: ModelCard, max_params: int = MAX_MODEL_PARAMS) -> nn.Module:
    """The card's architecture built on the meta device, refused past the parameter budget: what a
    card costs is known before a byte of it is allocated."""
    model = build_model(card, meta=True)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > max_params:
        raise CardError(
            f"{card.arch} with these arch_kwargs has {n_params:,} parameters, more than this server's "
            f"budget of {max_params:,}"
        )
    return model


def _check_fit(skeleton: nn.Module, state: dict[str, Any], card: ModelCard) -> None:
    """Keys and shapes of the weights against the (meta) model, before the real model is built."""
    own, arch = skeleton.state_dict(), card.arch
    for k, v in state.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            hint = ""
            if "pos_embed" in k and "img_size" not in card.arch_kwargs:
                # A ViT's position table is sized by the image side it was built for; a card that
                # does not say so gets the architecture's default.
                hint = (
                    f"; a ViT trained at another image size needs it in the card: arch_kwargs.img_size "
                    f"= {card.input_size[1]} (its input_size)"
                )
            raise WeightsError(
                f"weights do not fit {arch}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
                + hint
            )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]})")
    if problems:
        raise WeightsError(f"weights do not fit {arch}: " + "; ".join(problems))


def load_model(
    card: ModelCard, card_path: Path | str, device: str = "cpu", *, max_params: int = MAX_MODEL_PARAMS
) -> nn.Module:
    """The card's model with its weights, in eval mode on `device`. The real model is built only once
    the weights are known to fit it, so its cost is bounded by what was uploaded."""
    skeleton = check_architecture(card, max_params)
    state = read_state_dict(weights_path(card, card_path))
    _check_fit(skeleton, state, card)
    model = build_model(card)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def validate_model(
    card_path: Path | str, *, max_params: int = MAX_MODEL_PARAMS, shown_as: str | None = None
) -> ModelCard:
    """Load card + weights on the CPU and run one forward pass: what an upload must survive."""
    import torch

    card = load_card(card_path, shown_as=shown_as)
    model = load_model(card, card_path, max_params=max_params)
    with torch.no_grad():
        out = model(torch.zeros(1, *card.input_size))
    if out.shape[-1] != card.num_classes:
        raise CardError(
            f"model outputs {out.shape[-1]} classes but the card {shown_as or Path(card_path).name} "
            f"names {card.num_classes}"
        )
    return card


def write_card(card: ModelCard, path: Path) -> None:
    path.write_text(json.dumps(card.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
