"""Dataset references: ImageFolder folders and archives (extracted safely), and synthetic tasks."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from occulta.datasets import inspect_dataset, load_dataset, safe_extract
from occulta.errors import DatasetError

CLASSES = ["cat", "dog"]


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root: Path, per_class: int = 3) -> Path:
    for ci, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(_png((200 * ci, 10 * i, 50)))
    return root


def test_an_image_folder_loads_resized_centre_cropped_with_labels_by_class_name(tmp_path):
    root = _folder(tmp_path / "data")
    info = inspect_dataset(str(root))
    assert (info.kind, info.n_images, info.class_names) == ("folder", 6, CLASSES)
    # The model knows the classes in another order: labels follow the names, not folder order.
    data = load_dataset(str(root), input_size=(16, 16), model_classes=["dog", "cat", "bird"])
    assert data.images.shape == (6, 3, 16, 16)
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    dogs = data.images[data.labels == 0]
    assert dogs[:, 0, 8, 8].tolist() == pytest.approx([200 / 255] * 3, abs=1e-3)


def test_the_sample_comes_in_a_seeded_shuffled_order_not_class_by_class(tmp_path):
    """A folder lists its images class by class; an audit looking at the first images of the sample
    must still see every class."""
    root = _folder(tmp_path / "data", per_class=10)
    for samples in (None, 12):
        data = load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES, samples=samples, seed=0)
        assert set(data.labels[:6].tolist()) == {0, 1}


def test_sampling_is_seeded_and_a_flat_folder_is_unlabelled(tmp_path):
    root = _folder(tmp_path / "data", per_class=10)
    a = load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES, samples=5, seed=3)
    b = load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES, samples=5, seed=3)
    c = load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES, samples=5, seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes(_png((1, 2, 3)))
    assert load_dataset(str(flat), input_size=(8, 8), model_classes=CLASSES).labels is None


def test_a_range_of_the_sample_decodes_only_those_images(tmp_path):
    root = _folder(tmp_path / "data", per_class=10)
    full = load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES, samples=12, seed=1)
    part = load_dataset(
        str(root), input_size=(8, 8), model_classes=CLASSES, samples=12, seed=1, indices=range(4, 9)
    )
    assert (part.n_sampled, part.offset, part.images.shape[0]) == (12, 4, 5)
    assert torch.equal(part.images, full.images[4:9]) and torch.equal(part.labels, full.labels[4:9])
    with pytest.raises(DatasetError, match="not inside the 12 sampled images"):
        load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES, samples=12, indices=range(10, 14))


def test_class_folders_the_model_does_not_know_are_named(tmp_path):
    root = _folder(tmp_path / "data")
    with pytest.raises(DatasetError, match=r"\['cat', 'dog'\] are not among the model's class_names"):
        load_dataset(str(root), input_size=(8, 8), model_classes=["car", "plane"])


def test_a_corrupt_image_names_the_file(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES)


def test_zip_and_tar_archives_of_a_wrapped_folder_load_like_the_folder(tmp_path):
    root = _folder(tmp_path / "src" / "wrapped")
    zpath = tmp_path / "d.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(root.rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "src"))
    tpath = tmp_path / "d.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(root, arcname="wrapped")
    folder = load_dataset(str(root), input_size=(8, 8), model_classes=CLASSES)
    for archive in (zpath, tpath):
        data = load_dataset(str(archive), input_size=(8, 8), model_classes=CLASSES, work_dir=tmp_path / "w")
        assert torch.equal(data.images, folder.images) and torch.equal(data.labels, folder.labels)
        assert inspect_dataset(str(archive)).n_images == 6


def _zip_with(tmp_path: Path, name: str, data: bytes = b"x", symlink: bool = False) -> Path:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    ("name", "symlink", "message"),
    [
        ("../escape.png", False, "escapes the archive"),
        ("/etc/x.png", False, "absolute path"),
        ("cat/link.png", True, "is a link"),
        ("cat\\..\\x.png", False, "odd separator"),
    ],
)
def test_zip_archives_that_escape_or_link_are_refused_and_nothing_is_written(
    tmp_path, name, symlink, message
):
    archive = _zip_with(tmp_path, name, b"/etc/passwd" if symlink else b"x", symlink)
    dest = tmp_path / "out"
    with pytest.raises(DatasetError, match=message):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "escape.png").exists()


def test_tar_links_devices_and_traversal_are_refused(tmp_path):
    for kind in ("sym", "hard", "dev", "dotdot"):
        path = tmp_path / f"{kind}.tar"
        with tarfile.open(path, "w") as tf:
            info = tarfile.TarInfo("cat/a.png" if kind != "dotdot" else "../../a.png")
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
            elif kind == "dev":
                info.type = tarfile.CHRTYPE
            tf.addfile(info, io.BytesIO(b"") if kind != "dotdot" else io.BytesIO(b"x"))
        with pytest.raises(DatasetError, match=r"link|regular file|escapes"):
            safe_extract(path, tmp_path / f"out-{kind}")
        assert not (tmp_path / f"out-{kind}").exists()


def test_an_archive_that_expands_past_the_cap_is_refused_even_when_its_header_lies(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/big.png", b"\0" * 200_000)
    with pytest.raises(DatasetError, match="cap"):
        safe_extract(path, tmp_path / "out", max_bytes=100_000)
    # A header that under-declares the size is caught while copying.
    raw = bytearray(path.read_bytes())
    declared = (200_000).to_bytes(4, "little")
    raw = raw.replace(declared, (10).to_bytes(4, "little"))
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError):
        safe_extract(path, tmp_path / "out2", max_bytes=100_000)
    assert not (tmp_path / "out2").exists()


def test_synthetic_references_are_validated_and_sized_to_the_model():
    data = load_dataset(
        "synthetic:shapes?classes=3&n=20&artifact=watermark&seed=4",
        input_size=(48, 48),
        model_classes=["circle", "square", "triangle"],
    )
    assert data.images.shape == (20, 3, 48, 48) and data.object_masks.shape == (20, 48, 48)
    assert data.synthetic.size == 48 and "size=48" in data.ref
    resized = load_dataset(
        "synthetic:shapes?classes=3&n=4&size=32",
        input_size=(64, 64),
        model_classes=["circle", "square", "triangle"],
    )
    assert resized.images.shape == (4, 3, 64, 64)
    for ref, message in [
        ("synthetic:shapes?classes=1", "classes must be"),
        ("synthetic:shapes?colour=1", "unknown synthetic option 'colour'"),
        ("synthetic:shapes?box=1,2,3", "bad value for box"),
        ("synthetic:blobs", "unknown synthetic task"),
        ("synthetic:shapes?box=30,30,10,10&size=32", "does not fit"),
    ]:
        with pytest.raises(DatasetError, match=message):
            inspect_dataset(ref)


def test_urls_and_missing_paths_are_not_dataset_references(tmp_path):
    with pytest.raises(DatasetError, match="URLs are not dataset references"):
        inspect_dataset("http://169.254.169.254/latest/meta-data")
    with pytest.raises(DatasetError, match="does not exist"):
        inspect_dataset(str(tmp_path / "nope"))
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(DatasetError, match="expected a folder or"):
        inspect_dataset(str(tmp_path / "x.npy"))


def test_a_synthetic_image_depends_only_on_its_index_so_a_shard_can_make_its_own():
    from auditors.zoo.synthetic import generate, parse_synthetic

    spec = parse_synthetic("synthetic:shapes?classes=4&n=120&artifact=square&fraction=0.5&seed=2")
    whole, part = generate(spec), generate(spec, range(37, 61))
    assert torch.equal(whole.images[37:61], part.images) and torch.equal(whole.labels[37:61], part.labels)
    assert torch.equal(whole.has_artifact[37:61], part.has_artifact)
    assert whole.labels.bincount().tolist() == [30, 30, 30, 30]
    carriers = whole.has_artifact.sum().item()
    assert 0 < carriers < 30 and not bool(whole.has_artifact[whole.labels != 0].any())
