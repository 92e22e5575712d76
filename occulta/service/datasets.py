"""Dataset registration: a built-in `synthetic:` task, an `s3://` prefix inside the tenant's own space,
or an uploaded archive. Nothing else: the server never fetches a user-given URL (no SSRF) and never
reads a server-side path a user names."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from occulta.db import AuditJob, DatasetRecord, new_id
from occulta.db.models import QUEUED, RUNNING
from occulta.errors import ConflictError, DatasetError
from occulta.settings import Settings
from occulta.storage import (
    InvalidKeyError,
    ObjectStore,
    dataset_prefix,
    tenant_prefix,
    validate_relative_path,
)
from occulta.storage.base import CHUNK, CappedReader

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
ARCHIVE_SUFFIXES = {"zip": ".zip", "gzip": ".tar.gz", "tar": ".tar"}


def sniff_archive(head: bytes) -> str:
    """Archive type from its magic bytes, not from the client's file name."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise DatasetError("the archive is not a .zip, .tar or .tar.gz file")


def _inspect(ref: str):  # type: ignore[no-untyped-def]
    from occulta.datasets import inspect_dataset

    return inspect_dataset(ref)


def register_ref(session: Session, store: ObjectStore, *, tenant_id: str, ref: str) -> DatasetRecord:
    ref = ref.strip()
    if ref.startswith("synthetic:"):
        info = _inspect(ref)
        return _insert(
            session,
            tenant_id=tenant_id,
            kind="synthetic",
            ref=ref,
            info_n=info.n_images,
            classes=list(info.class_names),
            storage_key=None,
        )
    if ref.startswith("s3://"):
        key = _tenant_s3_key(store, tenant_id=tenant_id, ref=ref)
        n_images, classes = _scan_s3_prefix(store, key)
        return _insert(
            session,
            tenant_id=tenant_id,
            kind="s3",
            ref=ref,
            info_n=n_images,
            classes=classes,
            storage_key=key,
        )
    raise DatasetError(
        "unsupported dataset reference: use `synthetic:...`, an `s3://` prefix inside your tenant's space, "
        "or upload an archive; URLs and server paths are never fetched"
    )


def list_datasets(session: Session, *, tenant_id: str) -> list[DatasetRecord]:
    """The tenant's datasets, newest first."""
    query = select(DatasetRecord).where(DatasetRecord.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(DatasetRecord.created_at.desc())))


def delete_dataset(session: Session, store: ObjectStore, *, row: DatasetRecord) -> None:
    """Delete a dataset and its stored archive; refused while an unfinished audit still reads it (a
    failed `occulta submit` removes the dataset it registered this way)."""
    busy = session.scalars(
        select(AuditJob.id)
        .where(AuditJob.dataset_id == row.id, AuditJob.status.in_((QUEUED, RUNNING)))
        .limit(1)
    ).first()
    if busy is not None:
        raise ConflictError(
            f"dataset {row.id} is used by audit {busy}, which has not finished; cancel it first"
        )
    tenant_id, dataset_id, uploaded = row.tenant_id, row.id, row.kind == "archive"
    session.delete(row)
    session.commit()
    if uploaded:  # an s3:// registration points at the user's own objects
        store.delete_prefix(dataset_prefix(tenant_id, dataset_id))


def _tenant_s3_key(store: ObjectStore, *, tenant_id: str, ref: str) -> str:
    space = tenant_prefix(tenant_id)
    outside = DatasetError(
        f"{ref} is outside your tenant's space; upload images under {space} of the service's bucket"
    )
    key = store.external_key(ref)
    if key is None:
        raise outside
    try:
        key = validate_relative_path(key.rstrip("/")) + "/"
    except InvalidKeyError as exc:
        raise DatasetError(f"{ref}: {exc}") from None
    if not key.startswith(space):
        raise outside
    return key


def _scan_s3_prefix(store: ObjectStore, prefix: str) -> tuple[int, list[str]]:
    """ImageFolder layout under the prefix: `<class>/<image>`; images at the top are unlabelled."""
    images = [k[len(prefix) :] for k in store.list(prefix) if Path(k).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DatasetError(f"no images (.png, .jpg, ...) found under {prefix}")
    classes = sorted({rel.split("/")[0] for rel in images if "/" in rel})
    return len(images), classes


def upload_archive(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    tenant_id: str,
    archive: BinaryIO,
    filename: str | None = None,
) -> DatasetRecord:
    """Copy (capped), extract with traversal/link/size checks into a temp dir to validate it, then
    store the archive itself; the worker extracts it again with the same checks."""
    from occulta.datasets import safe_extract

    dataset_id = new_id("ds")
    with tempfile.TemporaryDirectory(prefix="occulta-dataset-") as tmp:
        work = Path(tmp)
        reader = CappedReader(archive, settings.max_upload_bytes)
        raw = work / "upload"
        with raw.open("wb") as out:
            while chunk := reader.read(CHUNK):
                out.write(chunk)
        with raw.open("rb") as fh:
            suffix = ARCHIVE_SUFFIXES[sniff_archive(fh.read(512))]
        path = raw.rename(work / f"archive{suffix}")
        root = safe_extract(
            path,
            work / "extracted",
            max_bytes=settings.max_extract_bytes,
            max_members=settings.max_archive_members,
        )
        info = _inspect(str(root))
        key = dataset_prefix(tenant_id, dataset_id) + path.name
        label = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "archive").name)[:100]
        try:
            store.put_file(key, path)
            return _insert(
                session,
                tenant_id=tenant_id,
                kind="archive",
                ref=f"upload:{label}",
                info_n=info.n_images,
                classes=list(info.class_names),
                storage_key=key,
                dataset_id=dataset_id,
                size=reader.size,
            )
        except BaseException:
            session.rollback()
            store.delete_prefix(dataset_prefix(tenant_id, dataset_id))
            raise


def _insert(
    session: Session,
    *,
    tenant_id: str,
    kind: str,
    ref: str,
    info_n: int,
    classes: list[str],
    storage_key: str | None,
    dataset_id: str | None = None,
    size: int | None = None,
) -> DatasetRecord:
    row = DatasetRecord(
        id=dataset_id or new_id("ds"),
        tenant_id=tenant_id,
        kind=kind,
        ref=ref,
        storage_key=storage_key,
        size_bytes=size,
        n_images=int(info_n),
        class_names=classes,
    )
    session.add(row)
    session.commit()
    return row
