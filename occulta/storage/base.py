"""The object-store interface: one implementation per URI scheme (MLflow's artifact-repository idea)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

from occulta.errors import TooLargeError

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class CappedReader:
    """Wraps a binary stream: counts and hashes what passes through, and raises TooLargeError the
    moment more than `max_bytes` went by, so an oversized upload is never stored whole."""

    def __init__(self, stream: BinaryIO, max_bytes: int | None) -> None:
        self._stream = stream
        self._max = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n if n is not None and n >= 0 else CHUNK)
        self.size += len(data)
        if self._max is not None and self.size > self._max:
            raise TooLargeError(f"upload is larger than the limit of {self._max} bytes")
        self._hash.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class ObjectStore(ABC):
    """Keys are relative `a/b/c` strings built by `occulta.storage.keys`."""

    scheme: ClassVar[str]

    @abstractmethod
    def put_stream(
        self, key: str, stream: BinaryIO, *, max_bytes: int | None = None, content_type: str | None = None
    ) -> StoredObject:
        """Store a stream under `key` (all or nothing), enforcing `max_bytes`."""

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> StoredObject:
        with path.open("rb") as fh:
            return self.put_stream(key, fh, content_type=content_type)

    @abstractmethod
    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """Stream an object's bytes; NotFoundError when it does not exist."""

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_bytes(key))

    def download(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as fh:
            for chunk in self.iter_bytes(key):
                fh.write(chunk)

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (full keys, sorted)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (a trailing '/' keeps `a/b` from matching `a/bc`)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def check(self) -> None:
        """Raise ServiceError when the store cannot be reached (used by /readyz)."""

    def presigned_url(self, key: str, *, expires: int, media_type: str | None = None) -> str | None:
        """A time-limited URL the client fetches directly; None when the store cannot make one."""
        return None

    def external_key(self, url: str) -> str | None:
        """The store key a user-given URL points to, when it points inside this store; else None."""
        return None
