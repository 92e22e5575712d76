"""A task of real photographs that ships inside an installed package: crops of scikit-image's images.

Synthetic shapes on gradients make shortcuts easy to find: their backgrounds are smooth, so any mark
stands out. Real photographs have texture, edges and colour everywhere, which is where a moving tag or
a faint watermark hides (issue: a tag found at 79-99% flip on shapes was missed at 33% on photos).
Each class is one photograph; an image is a random crop of it (scale, place, mirror) resized to the
model's input, turned to grey and recoloured with a random tint, brightness and contrast per image, so
the class lives in the photograph's structure and texture, not in its colours: a clean model must not
be told apart by a colour cast it was never given (a photograph's own colours would be one). Nothing is downloaded: only the files scikit-image bundles in its
wheel are used (`available()` lists them), and a missing file is a clear error.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Colour photographs bundled in scikit-image's wheel (skimage/data/*.png), distinct in content.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "retina", "ihc", "color")
_FILES = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "retina": "retina.jpg",
    "ihc": "ihc.png",
    "color": "color.png",
}


def _data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def available() -> list[str]:
    """The photographs whose file is on disk (no download is ever attempted)."""
    root = _data_dir()
    return [p for p in PHOTOS if (root / _FILES[p]).is_file()]


@cache
def _photo(name: str) -> torch.Tensor:
    from PIL import Image

    path = _data_dir() / _FILES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"scikit-image's bundled photograph {path.name} is missing; reinstall scikit-image "
            "(its wheel ships it) or use fewer classes"
        )
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def photo_images(n: int, *, size: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` crops [n,3,size,size] in [0,1] and labels (class = photograph), balanced, seeded per image."""
    names = available()
    if classes < 2 or classes > len(names):
        raise ValueError(f"the photo task has 2..{len(names)} classes on this install; got {classes}")
    labels = np.arange(n) % classes
    np.random.default_rng(seed).shuffle(labels)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        rng = np.random.default_rng([seed, i, 11])
        photo = _photo(names[int(labels[i])])
        _, h, w = photo.shape
        side = int(min(h, w) * rng.uniform(0.25, 0.6))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[:, y : y + side, x : x + side].unsqueeze(0)
        crop = F.interpolate(crop, size=(size, size), mode="area")[0]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        grey = (crop * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        grey = (grey - grey.mean()) * rng.uniform(0.7, 1.3) + rng.uniform(0.35, 0.65)
        tint = torch.from_numpy(rng.uniform(0.75, 1.25, (3, 1, 1)).astype(np.float32))
        out[i] = (grey * tint).clamp(0, 1)
    return out, torch.from_numpy(labels.astype(np.int64))
