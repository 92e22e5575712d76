"""/v1/models: upload (card + weights, multipart), list, get, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from api.deps import ScopeDep, SettingsDep, StoreDep
from api.schemas import ERRORS, ModelOut
from occulta.db import ModelRecord
from occulta.errors import WeightsError
from occulta.service import models as service

router = APIRouter(prefix="/models", tags=["models"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=ModelOut,
    responses={
        200: {"description": "this checkpoint and card were uploaded before: the existing model"},
        413: {"description": "upload over the size limit"},
    },
    summary="Upload a model: a card (JSON/YAML) and its weights (safetensors or a state dict)",
)
def upload_model(
    response: Response,
    scope: ScopeDep,
    store: StoreDep,
    settings: SettingsDep,
    card: Annotated[UploadFile, File(description="model card: arch, class_names, input_size, mean, std")],
    weights: Annotated[UploadFile | None, File(description=".safetensors, or a torch state dict")] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> ModelOut:
    """Weights are loaded with safetensors or `torch.load(weights_only=True)` into the card's arch on
    CPU before anything is stored; full pickles are refused and never executed. The same checkpoint
    (by sha256) with the same card again answers 200 with the model already stored, not a copy."""
    if weights is None:
        raise WeightsError("the `weights` file is missing: send the checkpoint beside the card")
    row, created = service.upload_or_find_model(
        scope.session,
        store,
        settings,
        tenant_id=scope.tenant_id,
        card=card.file,
        weights=weights.file,
        name=name,
        card_filename=card.filename,
        weights_filename=weights.filename,
    )
    if not created:
        response.status_code = 200
    return ModelOut.of(row)


@router.get("", response_model=list[ModelOut], summary="List your models, newest first")
def list_models(scope: ScopeDep) -> list[ModelOut]:
    rows = service.list_models(scope.session, tenant_id=scope.tenant_id)
    return [ModelOut.of(r) for r in rows]


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, scope: ScopeDep) -> ModelOut:
    return ModelOut.of(scope.get(ModelRecord, model_id, "model"))


@router.delete(
    "/{model_id}", status_code=204, responses={409: {"description": "an unfinished audit uses it"}}
)
def delete_model(model_id: str, scope: ScopeDep, store: StoreDep) -> Response:
    service.delete_model(scope.session, store, row=scope.get(ModelRecord, model_id, "model"))
    return Response(status_code=204)
