"""/v1/keys: API keys of the caller's tenant (the secret is shown once, at creation)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ScopeDep
from api.schemas import ERRORS, KeyIn, KeyOut, NewKeyOut
from occulta.db import ApiKey
from occulta.service import keys as service

router = APIRouter(prefix="/keys", tags=["keys"], responses=ERRORS)


@router.post("", status_code=201, response_model=NewKeyOut, summary="Create an API key for your tenant")
def create_key(scope: ScopeDep, body: KeyIn | None = None) -> NewKeyOut:
    new = service.create_key(scope.session, tenant_id=scope.tenant_id, name=(body.name if body else ""))
    row = scope.get(ApiKey, new.id, "API key")
    return NewKeyOut(**KeyOut.of(row).model_dump(), key=new.key)


@router.get("", response_model=list[KeyOut])
def list_keys(scope: ScopeDep) -> list[KeyOut]:
    return [KeyOut.of(r) for r in service.list_keys(scope.session, tenant_id=scope.tenant_id)]


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, scope: ScopeDep) -> Response:
    service.revoke_key(scope.session, tenant_id=scope.tenant_id, key_id=key_id)
    return Response(status_code=204)
