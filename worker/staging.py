"""Stage a job's inputs from object storage into its private temp dir: the runner reads local files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from occulta.errors import DatasetError
from occulta.settings import Settings
from occulta.storage import ObjectStore, validate_relative_path


@dataclass(frozen=True)
class DatasetSource:
    """Plain values copied out of the row (no ORM object travels into the run)."""

    kind: str
    ref: str
    storage_key: str | None


def stage_model(store: ObjectStore, *, prefix: str, dest: Path) -> Path:
    """Download the card and the weights; returns the card's path (its `weights` is relative to it)."""
    for key in store.list(prefix):
        store.download(key, dest / validate_relative_path(key[len(prefix) :]))
    card = dest / "card.json"
    if not card.is_file():
        raise DatasetError(f"the stored model under {prefix} has no card.json")
    return card


def stage_dataset(store: ObjectStore, settings: Settings, *, source: DatasetSource, dest: Path) -> str:
    """A `data_ref` for the runner: synthetic refs as they are, archives extracted again with the same
    traversal/size checks as at upload, s3 prefixes downloaded into an ImageFolder."""
    if source.kind == "synthetic":
        return source.ref
    if source.storage_key is None:
        raise DatasetError(f"dataset {source.ref} has no stored data")
    if source.kind == "archive":
        from occulta.datasets import safe_extract

        archive = dest / Path(source.storage_key).name
        store.download(source.storage_key, archive)
        root = safe_extract(
            archive,
            dest / "extracted",
            max_bytes=settings.max_extract_bytes,
            max_members=settings.max_archive_members,
        )
        archive.unlink()
        return str(root)
    if source.kind == "s3":
        folder = dest / "images"
        for key in store.list(source.storage_key):
            store.download(key, folder / validate_relative_path(key[len(source.storage_key) :]))
        return str(folder)
    raise DatasetError(f"unknown dataset kind {source.kind!r}")
