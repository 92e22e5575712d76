"""Heatmap PNGs drawn from the raw maps a report ships as `.npz` artifacts (float16, model-input pixels),
so the gallery can switch method or strategy per image and draw boxes in the same coordinates.
numpy and Pillow come with the `audit` extra the API image installs; imported lazily."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from occulta.errors import NotFoundError

if TYPE_CHECKING:
    import numpy as np

# Anchors of a perceptual sequential map (close to matplotlib's inferno) and a diverging one for signed maps.
_SEQUENTIAL = [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)]
_DIVERGING = [(33, 102, 172), (146, 197, 222), (247, 247, 247), (244, 165, 130), (178, 24, 43)]


IMAGE_KEY = "image"  # the input itself, when the artifact ships it (`images`, uint8 [N,3,H,W])


@dataclass(frozen=True)
class MapSet:
    """Maps in one artifact: `keys` to toggle between (methods or strategies), `count` images each,
    and, when the artifact ships its inputs, the predicted class of each image."""

    path: str
    keys: list[str]
    count: int
    has_images: bool = False
    predicted: tuple[int, ...] = ()
    labels: tuple[int, ...] = ()  # true classes (-1 unknown), when the artifact ships them
    confidence: tuple[float, ...] = ()  # softmax of each prediction, when shipped
    signed: bool = False  # the maps take both signs (a diverging colour bar, e.g. LIME coefficients)

    def example_of(self, class_index: int) -> int | None:
        """The first image predicted as `class_index`, to draw that class's finding on."""
        return next((i for i, p in enumerate(self.predicted[: self.count]) if p == class_index), None)


def _load(raw: bytes) -> dict[str, Any]:
    import numpy as np

    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _lime_keys(arrays: dict[str, Any]) -> list[str] | None:
    """LIME artifacts hold per-strategy coefficients over superpixels (`coef_i`) plus `segments`."""
    if "segments" not in arrays or "strategies" not in arrays:
        return None
    return [str(s) for s in arrays["strategies"]]


def describe(path: str, raw: bytes) -> MapSet | None:
    """The toggles of a map artifact, or None when it holds no per-image 2-D maps."""
    arrays = _load(raw)
    images = "images" in arrays and getattr(arrays["images"], "ndim", 0) == 4
    shipped = {
        "has_images": images,
        "predicted": tuple(int(p) for p in arrays["predicted"]) if "predicted" in arrays else (),
        "labels": tuple(int(y) for y in arrays["labels"]) if "labels" in arrays else (),
        "confidence": tuple(float(c) for c in arrays["confidence"]) if "confidence" in arrays else (),
    }
    lime = _lime_keys(arrays)
    if lime is not None:
        count = int(arrays["segments"].shape[0])
        signed = any(float(arrays[f"coef_{i}"].min()) < 0 for i in range(len(lime)))
        return MapSet(path=path, keys=lime, count=count, signed=signed, **shipped)  # type: ignore[arg-type]
    keys = [k for k, v in arrays.items() if getattr(v, "ndim", 0) == 3]
    if not keys:
        return None
    count = int(min(arrays[k].shape[0] for k in keys))
    signed = any(float(arrays[k].min()) < 0 for k in keys)
    return MapSet(path=path, keys=keys, count=count, signed=signed, **shipped)  # type: ignore[arg-type]


def _map(arrays: dict[str, Any], key: str, index: int) -> np.ndarray:
    import numpy as np

    lime = _lime_keys(arrays)
    if lime is not None:
        if key not in lime:
            raise NotFoundError(f"no strategy {key!r} in this artifact (have: {', '.join(lime)})")
        coef = arrays[f"coef_{lime.index(key)}"].astype(np.float32)
        segments = arrays["segments"]
        maps = np.stack([coef[i][segments[i]] for i in range(segments.shape[0])])
    else:
        if key not in arrays or getattr(arrays[key], "ndim", 0) != 3:
            raise NotFoundError(f"no map {key!r} in this artifact")
        maps = arrays[key].astype(np.float32)
    if index < 0:
        return np.asarray(np.abs(maps).mean(axis=0))
    if index >= maps.shape[0]:
        raise NotFoundError(f"image {index} is out of range (the artifact has {maps.shape[0]})")
    return np.asarray(maps[index])


def _colourise(values: np.ndarray) -> np.ndarray:
    import numpy as np

    values = np.nan_to_num(values.astype(np.float32))
    if values.min() < 0:
        scale = float(np.abs(values).max()) or 1.0
        t, anchors = (values / scale + 1) / 2, _DIVERGING
    else:
        lo, hi = float(values.min()), float(values.max())
        t, anchors = (values - lo) / ((hi - lo) or 1.0), _SEQUENTIAL
    stops = np.linspace(0, 1, len(anchors))
    lut = np.array(anchors, dtype=np.float32)
    rgb = np.stack([np.interp(t, stops, lut[:, c]) for c in range(3)], axis=-1)
    return np.asarray(rgb.round().astype(np.uint8))


def render_png(raw: bytes, key: str, index: int) -> bytes:
    """One map (or, for `key="image"`, the input itself) as a PNG at model-input resolution; the page
    scales it up without smoothing."""
    import numpy as np
    from PIL import Image

    arrays = _load(raw)
    if key == IMAGE_KEY:
        if "images" not in arrays or not 0 <= index < arrays["images"].shape[0]:
            raise NotFoundError(f"this artifact holds no input image {index}")
        rgb = np.ascontiguousarray(arrays["images"][index].transpose(1, 2, 0))
    else:
        rgb = _colourise(_map(arrays, key, index))
    image = Image.fromarray(rgb, mode="RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
