"""HTTP answers for an audit's stored files, shared by the /v1 routes and the dashboard: the services
say which object and media type (`occulta.service.audits`), these say how it travels."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import RedirectResponse, StreamingResponse

from occulta.db import ArtifactRecord
from occulta.storage import ObjectStore


def stored_file(store: ObjectStore, key: str, media_type: str) -> StreamingResponse:
    """The object streamed in chunks (a large report never sits whole in the API's memory)."""
    return StreamingResponse(store.iter_bytes(key), media_type=media_type)


def artifact_file(store: ObjectStore, row: ArtifactRecord, *, expires: int) -> Response:
    """307 to a presigned URL where the store makes one (S3), so the bytes bypass the API; streamed
    from local storage otherwise."""
    url = store.presigned_url(row.storage_key, expires=expires, media_type=row.media_type)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    return stored_file(store, row.storage_key, row.media_type)
