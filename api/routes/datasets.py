"""/v1/datasets: register a reference (JSON) or upload an archive (multipart), list, get."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from api.deps import ScopeDep, SettingsDep, StoreDep
from api.schemas import ERRORS, DatasetIn, DatasetOut
from occulta.db import DatasetRecord
from occulta.errors import DatasetError, OccultaError
from occulta.service import datasets as service

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=ERRORS)

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DatasetIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["archive"],
                    "properties": {
                        "archive": {
                            "type": "string",
                            "format": "binary",
                            "description": ".zip, .tar or .tar.gz of class folders",
                        }
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=_BODY_DOC,
    summary="Register a dataset reference (JSON) or upload an ImageFolder archive (multipart)",
)
async def create_dataset(
    request: Request, scope: ScopeDep, store: StoreDep, settings: SettingsDep
) -> DatasetOut:
    """One route, two bodies, told apart by Content-Type. The blocking work (extracting, listing
    objects) runs in a thread so the event loop keeps serving."""
    from starlette.concurrency import run_in_threadpool

    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("archive")
        if upload is None or isinstance(upload, str):
            raise DatasetError("multipart upload needs an `archive` file field")
        row = await run_in_threadpool(
            service.upload_archive,
            scope.session,
            store,
            settings,
            tenant_id=scope.tenant_id,
            archive=upload.file,
            filename=upload.filename,
        )
        return DatasetOut.of(row)
    raw = await request.body()
    try:
        body = DatasetIn.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise OccultaError(f"the request body is not valid JSON: {exc}", code="malformed_json") from None
    except ValidationError as exc:
        raise DatasetError(f"invalid dataset request: {exc.errors()[0]['msg']}") from None
    row = await run_in_threadpool(
        service.register_ref, scope.session, store, tenant_id=scope.tenant_id, ref=body.ref
    )
    return DatasetOut.of(row)


@router.get("", response_model=list[DatasetOut])
def list_datasets(scope: ScopeDep) -> list[DatasetOut]:
    rows = service.list_datasets(scope.session, tenant_id=scope.tenant_id)
    return [DatasetOut.of(r) for r in rows]


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, scope: ScopeDep) -> DatasetOut:
    return DatasetOut.of(scope.get(DatasetRecord, dataset_id, "dataset"))


@router.delete(
    "/{dataset_id}", status_code=204, responses={409: {"description": "an unfinished audit uses it"}}
)
def delete_dataset(dataset_id: str, scope: ScopeDep, store: StoreDep) -> Response:
    service.delete_dataset(scope.session, store, row=scope.get(DatasetRecord, dataset_id, "dataset"))
    return Response(status_code=204)
