"""Dataset references, in the grammar users know from timm's `create_dataset`.

- a folder of class folders (ImageFolder), or a flat folder of images (unlabelled);
- a `.zip` / `.tar` / `.tar.gz` archive of such a folder, extracted with traversal checks and caps;
- `synthetic:TASK?...`, the built-in planted-shortcut tasks (see `auditors.zoo.synthetic`).

Images come back as float [N,3,H,W] in [0,1] at the model's input size (resize + centre crop per
the card); normalisation is the engine's job.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from occulta.errors import DatasetError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
DEFAULT_MAX_EXTRACT_BYTES = 4 << 30
DEFAULT_MAX_MEMBERS = 200_000
# Pixels one image may declare: a few-KB PNG can claim gigapixels that decoding would allocate. The
# header is read first, so a bomb is refused before a byte of it is decompressed.
MAX_IMAGE_PIXELS = 64_000_000
# n x size^2 of a synthetic reference: every image is generated in memory as float32 RGB, so this
# bounds what one reference can cost a worker (about 3 GB); 1,024 images at 512 px, 5,000 at 224 px.
MAX_SYNTHETIC_PIXELS = 1 << 28


@dataclass
class DatasetInfo:
    kind: str  # synthetic | folder | archive
    ref: str
    n_images: int
    class_names: list[str]


@dataclass
class LoadedDataset:
    ref: str
    images: torch.Tensor  # [N,3,H,W] in [0,1]
    labels: torch.Tensor | None  # indices into the MODEL's class_names
    class_names: list[str]  # the dataset's own classes
    n_total: int
    object_masks: torch.Tensor | None = None
    synthetic: Any = None  # auditors.zoo.synthetic.SyntheticSpec for synthetic references
    n_sampled: int = 0  # images in the (sampled) dataset; `images` may hold only a range of them
    offset: int = 0  # index of images[0] in the sampled dataset


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member_name(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise DatasetError(f"archive member {name!r} has an odd separator; refusing the archive")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        raise DatasetError(f"archive member {name!r} is an absolute path; refusing the archive")
    if ".." in p.parts:
        raise DatasetError(f"archive member {name!r} escapes the archive with '..'; refusing the archive")
    return p


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Extract `archive` into `dest`, refusing absolute paths, `..`, links, devices and bombs.

    All members are checked before anything is written; bytes are counted while copying too, since
    a zip header's declared size can lie. On refusal `dest` is removed: nothing half-written stays.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, max_bytes, max_members)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, max_bytes, max_members)
        else:
            raise DatasetError(f"{archive.name} is not a zip or tar archive")
    except DatasetError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise DatasetError(f"{archive.name} is corrupt or truncated ({exc})") from None
    return dest


def _copy_capped(src: Any, out: Path, budget: list[int]) -> None:
    with out.open("wb") as f:
        while chunk := src.read(1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise DatasetError("archive expands past the size cap; refusing it")
            f.write(chunk)


def _write_members(
    dest: Path, members: list[tuple[str, bool, Callable[[], IO[bytes] | None]]], max_bytes: int
) -> None:
    """Write checked members (name, is a folder, opener) under `dest`, counting bytes as they come."""
    budget = [max_bytes]
    for name, is_dir, opener in members:
        target = dest / _check_member_name(name)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = opener()
        if src is None:
            raise DatasetError(f"archive member {name!r} cannot be read")
        with src:
            _copy_capped(src, target, budget)


def _extract_zip(archive: Path, dest: Path, max_bytes: int, max_members: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise DatasetError(f"archive has {len(infos)} members, more than the cap of {max_members}")
        total = 0
        for info in infos:
            _check_member_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DatasetError(f"archive member {info.filename!r} is a link; refusing the archive")
            total += info.file_size
        if total > max_bytes:
            raise DatasetError(f"archive expands to {total} bytes, more than the cap of {max_bytes}")
        _write_members(dest, [(i.filename, i.is_dir(), partial(zf.open, i)) for i in infos], max_bytes)


def _extract_tar(archive: Path, dest: Path, max_bytes: int, max_members: int) -> None:
    with tarfile.open(archive) as tf:
        members = []
        total = 0
        for m in tf:
            members.append(m)
            if len(members) > max_members:
                raise DatasetError(f"archive has more than the cap of {max_members} members")
            _check_member_name(m.name)
            if m.issym() or m.islnk():
                raise DatasetError(f"archive member {m.name!r} is a link; refusing the archive")
            if not (m.isfile() or m.isdir()):
                raise DatasetError(f"archive member {m.name!r} is not a regular file; refusing the archive")
            total += m.size
            if total > max_bytes:
                raise DatasetError(f"archive expands past the cap of {max_bytes} bytes")
        _write_members(dest, [(m.name, m.isdir(), partial(tf.extractfile, m)) for m in members], max_bytes)


def _dataset_root(folder: Path) -> Path:
    """An archive often wraps the class folders in one top folder: descend through it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        if any(p.is_dir() for p in inner.iterdir()) or any(_is_image(p) for p in inner.iterdir()):
            return _dataset_root(inner)
    return folder


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def scan_folder(folder: Path) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """(image path, class name or None) pairs in a stable order, and the sorted class names."""
    root = _dataset_root(folder)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    items: list[tuple[Path, str | None]] = []
    if classes:
        for c in classes:
            for f in sorted((root / c).rglob("*")):
                if _is_image(f):
                    items.append((f, c))
    else:
        items = [(f, None) for f in sorted(root.iterdir()) if _is_image(f)]
    if not items:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return items, classes


def _synthetic_spec(ref: str, size: int | None) -> Any:
    from auditors.zoo.synthetic import SyntheticSpecError, parse_synthetic

    try:
        spec = parse_synthetic(ref)
        if size is not None and "size=" not in ref:
            spec = spec.with_(size=size)
    except SyntheticSpecError as exc:
        raise DatasetError(str(exc)) from None
    if spec.n * spec.size * spec.size > MAX_SYNTHETIC_PIXELS:
        raise DatasetError(
            f"synthetic n={spec.n} x size={spec.size}^2 is {spec.n * spec.size**2:,} pixels, more than the "
            f"budget of {MAX_SYNTHETIC_PIXELS:,}; lower n or size"
        )
    return spec


def check_reference(ref: str) -> None:
    """The cheap part of a dataset check, torch-free, so a CLI reports a wrong path before loading a
    model: a local reference must exist; a synthetic one is parsed when it is loaded."""
    if not ref.startswith("synthetic:"):
        _local_path(ref)


def _local_path(ref: str) -> Path:
    """A non-synthetic reference must be an existing folder or archive on this machine (never a URL)."""
    if "://" in ref:
        raise DatasetError(f"{ref!r}: URLs are not dataset references here; upload an archive instead")
    path = Path(ref)
    if not path.exists():
        raise DatasetError(f"dataset {ref!r} does not exist (a folder, an archive or synthetic:...)")
    if path.is_file() and not is_archive(path):
        raise DatasetError(f"{path.name}: expected a folder or a {', '.join(ARCHIVE_SUFFIXES)} archive")
    return path


def inspect_dataset(
    ref: str, *, work_dir: Path | None = None, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES
) -> DatasetInfo:
    """Validate a reference without loading pixels: counts and class names."""
    if ref.startswith("synthetic:"):
        spec = _synthetic_spec(ref, None)
        return DatasetInfo("synthetic", spec.ref(), spec.n, spec.class_names)
    path = _local_path(ref)
    if path.is_file():
        import tempfile

        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            items, classes = scan_folder(safe_extract(path, Path(tmp) / "x", max_bytes=max_bytes))
            return DatasetInfo("archive", ref, len(items), classes)
    items, classes = scan_folder(path)
    return DatasetInfo("folder", ref, len(items), classes)


def _load_image(path: Path, size: tuple[int, int], crop_pct: float, interpolation: str) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    modes = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    resample = modes.get(
        interpolation, Image.Resampling.NEAREST if interpolation == "nearest" else modes["bilinear"]
    )
    try:
        with Image.open(path) as raw:
            if raw.width * raw.height > MAX_IMAGE_PIXELS:
                raise DatasetError(
                    f"image {path.name} declares {raw.width}x{raw.height} pixels, more than the "
                    f"{MAX_IMAGE_PIXELS:,} allowed (a decompression bomb?)"
                )
            im = raw.convert("RGB")
            h, w = size
            scale_h, scale_w = round(h / crop_pct), round(w / crop_pct)
            # Resize the shorter side (timm's eval transform), then centre-crop to the input size.
            r = max(scale_h / im.height, scale_w / im.width)
            im = im.resize((max(w, round(im.width * r)), max(h, round(im.height * r))), resample)
            left, top = (im.width - w) // 2, (im.height - h) // 2
            im = im.crop((left, top, left + w, top + h))
            return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path.name}: {exc}") from None


def map_labels(dataset_classes: list[str], model_classes: list[str]) -> dict[str, int]:
    missing = [c for c in dataset_classes if c not in model_classes]
    if missing:
        raise DatasetError(
            f"dataset classes {missing[:5]} are not among the model's class_names {model_classes[:10]}; "
            "name the class folders like the card's class_names"
        )
    return {c: model_classes.index(c) for c in dataset_classes}


def load_dataset(
    ref: str,
    *,
    input_size: tuple[int, int],
    model_classes: list[str],
    samples: int | None = None,
    seed: int = 0,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
    work_dir: Path | None = None,
    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
    indices: range | None = None,
) -> LoadedDataset:
    """Load (a seeded sample of) the referenced images at the model's input size.

    `indices` keeps only that contiguous range of the sampled images (a shard): image i is the same
    image whatever the range, and a folder decodes only the images in it.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    if samples is not None and samples < 1:
        raise DatasetError("samples must be at least 1")
    rng = np.random.default_rng(seed)
    if ref.startswith("synthetic:"):
        from auditors.zoo.synthetic import generate

        spec = _synthetic_spec(ref, input_size[0] if input_size[0] == input_size[1] else None)
        idx = _sample_order(spec.n, samples, rng)
        n_sampled, idx, offset = _select(idx, indices)
        data = generate(spec, idx)  # only the images asked for
        images, masks = data.images, data.object_masks
        if tuple(images.shape[-2:]) != tuple(input_size):
            images = F.interpolate(images, size=input_size, mode="bilinear", align_corners=False)
            masks = F.interpolate(masks[:, None].float(), size=input_size, mode="nearest")[:, 0] > 0.5
        mapping = map_labels(data.class_names, model_classes)
        synth_labels = torch.tensor([mapping[data.class_names[i]] for i in data.labels.tolist()])
        return LoadedDataset(
            spec.ref(), images, synth_labels, data.class_names, spec.n, masks, spec, n_sampled, offset
        )
    path = _local_path(ref)
    if path.is_file():
        if work_dir is None:
            raise DatasetError("an archive reference needs a work directory to extract into")
        folder = safe_extract(path, work_dir / f"extract-{os.getpid()}", max_bytes=max_bytes)
    else:
        folder = path
    items, classes = scan_folder(folder)
    order = _sample_order(len(items), samples, rng)
    n_sampled, order, offset = _select(order, indices)
    arrays = [_load_image(items[i][0], input_size, crop_pct, interpolation) for i in order]
    images = torch.from_numpy(np.stack(arrays))
    labels: torch.Tensor | None = None
    if classes:
        mapping = map_labels(classes, model_classes)
        labels = torch.tensor([mapping[items[i][1]] for i in order])
    return LoadedDataset(ref, images, labels, classes, len(items), n_sampled=n_sampled, offset=offset)


def _sample_order(n: int, samples: int | None, rng: Any) -> Any:
    """The sampled images in a seeded random order, never sorted: a folder lists its images class by
    class, so a sorted sample (or the folder's own order) puts one class first and any audit that looks
    at "the first k" images sees only that class."""
    return rng.permutation(n)[: n if samples is None else min(samples, n)]


def _select(order: Any, indices: range | None) -> tuple[int, Any, int]:
    """(size of the sampled dataset, the part of `order` to load, its offset) for a shard range."""
    n = len(order)
    if indices is None:
        return n, order, 0
    if indices.step != 1 or not 0 <= indices.start <= indices.stop <= n:
        raise DatasetError(
            f"image range {indices.start}..{indices.stop} is not inside the {n} sampled images"
        )
    return n, order[indices.start : indices.stop], indices.start
