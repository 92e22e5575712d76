"""`file://` object store: a directory on local disk (embedded mode, or a shared volume)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from occulta.errors import NotFoundError, ServiceError
from occulta.storage.base import CHUNK, CappedReader, ObjectStore, StoredObject
from occulta.storage.keys import validate_relative_path


class FileStore(ObjectStore):
    scheme = "file"

    def __init__(self, url: str) -> None:
        self.root = Path(unquote(urlparse(url).path)).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_relative_path(key.rstrip("/"))).resolve()
        if not path.is_relative_to(self.root):
            raise NotFoundError(f"object {key} not found")
        return path

    def put_stream(
        self, key: str, stream: BinaryIO, *, max_bytes: int | None = None, content_type: str | None = None
    ) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        reader = CappedReader(stream, max_bytes)
        # Write beside the target and rename: a reader never sees a half-written object.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"object {key} not found")

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return chunks()

    def download(self, key: str, dest: Path) -> None:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"object {key} not found")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".upload-")
        )

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        n = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return n

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise ServiceError(f"object directory {self.root} is missing or not writable")
