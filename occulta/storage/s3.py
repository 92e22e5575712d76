"""`s3://bucket/prefix` object store on boto3: AWS S3 or anything S3-compatible (MinIO, SeaweedFS)
through `OCCULTA_S3_ENDPOINT_URL`. Credentials from settings, else boto3's own chain (IAM roles)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import urlparse

from occulta.errors import NotFoundError, ServiceError, TooLargeError
from occulta.settings import Settings
from occulta.storage.base import CHUNK, CappedReader, ObjectStore, StoredObject


class S3Store(ObjectStore):
    scheme = "s3"

    def __init__(self, url: str, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if not self.bucket:
            raise ValueError(f"storage URL {url!r} has no bucket (expected s3://bucket/prefix)")
        creds: dict[str, Any] = {}
        if settings.s3_access_key_id and settings.s3_secret_access_key:
            creds = {
                "aws_access_key_id": settings.s3_access_key_id.get_secret_value(),
                "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
            }
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region or "us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
            **creds,
        )

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def put_stream(
        self, key: str, stream: BinaryIO, *, max_bytes: int | None = None, content_type: str | None = None
    ) -> StoredObject:
        from botocore.exceptions import BotoCoreError, ClientError

        reader = CappedReader(stream, max_bytes)
        extra = {"ContentType": content_type} if content_type else None
        try:
            # Multipart for large objects; s3transfer aborts the multipart upload on error.
            self.client.upload_fileobj(reader, self.bucket, self._full(key), ExtraArgs=extra)
        except TooLargeError:
            self._delete_quietly(key)
            raise
        except (BotoCoreError, ClientError) as exc:
            self._delete_quietly(key)
            if max_bytes is not None and reader.size > max_bytes:
                raise TooLargeError(f"upload is larger than the limit of {max_bytes} bytes") from exc
            raise ServiceError(f"object storage write failed: {exc}") from exc
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def _delete_quietly(self, key: str) -> None:
        # Best effort: the write already failed and that error is the one to report.
        with contextlib.suppress(Exception):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFoundError(f"object {key} not found") from exc
            raise ServiceError(f"object storage read failed: {exc}") from exc
        return iter(lambda: body.read(CHUNK), b"")

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            keys.extend(self._relative(obj["Key"]) for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._full(k)} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError:
            return False

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise ServiceError(f"object storage bucket {self.bucket} is not reachable: {exc}") from exc

    def presigned_url(self, key: str, *, expires: int, media_type: str | None = None) -> str | None:
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self._full(key)}
        if media_type:
            params["ResponseContentType"] = media_type
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    def external_key(self, url: str) -> str | None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or parsed.query or parsed.fragment:
            return None
        path = parsed.path.lstrip("/")
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return None
            path = path[len(self.prefix) + 1 :]
        return path
