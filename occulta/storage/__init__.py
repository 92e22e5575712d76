"""Object storage: `get_store(settings)` picks the implementation for the URL's scheme."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from occulta.settings import Settings
from occulta.storage.base import ObjectStore, StoredObject
from occulta.storage.keys import (
    InvalidKeyError,
    audit_prefix,
    dataset_prefix,
    join_key,
    model_prefix,
    tenant_prefix,
    validate_relative_path,
)


def _file(url: str, settings: Settings) -> ObjectStore:
    from occulta.storage.file import FileStore

    return FileStore(url)


def _s3(url: str, settings: Settings) -> ObjectStore:
    from occulta.storage.s3 import S3Store

    return S3Store(url, settings)


# Registry by scheme; boto3 is imported only when an s3:// store is used.
STORES: dict[str, Callable[[str, Settings], ObjectStore]] = {"file": _file, "s3": _s3}


def get_store(settings: Settings) -> ObjectStore:
    scheme = urlparse(settings.storage_url).scheme
    if scheme not in STORES:
        known = ", ".join(f"{s}://" for s in sorted(STORES))
        raise ValueError(f"unsupported OCCULTA_STORAGE_URL scheme {scheme!r}; use one of {known}")
    return STORES[scheme](settings.storage_url, settings)


__all__ = [
    "STORES",
    "InvalidKeyError",
    "ObjectStore",
    "StoredObject",
    "audit_prefix",
    "dataset_prefix",
    "get_store",
    "join_key",
    "model_prefix",
    "tenant_prefix",
    "validate_relative_path",
]
