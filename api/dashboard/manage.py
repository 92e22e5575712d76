"""Dashboard pages for what the API already manages: API keys (create, revoke) and models (list with
their audit history and verdict trend, delete). Each handler calls the service function the /v1 route
calls, so tenancy, the one-time display of a new key and the 409 for a model still in use are the
same; a page's rows come from a fixed number of queries, however many models or runs it lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.dashboard.session import DashScope, WebSessionDep, check_csrf
from api.dashboard.web import PREFIX, PageRoute, render
from api.deps import StoreDep
from api.schemas import AuditOut, KeyOut, ModelOut, NewKeyOut
from occulta.db import ApiKey, ModelRecord
from occulta.service import audits as audits_service
from occulta.service import keys as keys_service
from occulta.service import models as models_service

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)
HISTORY = 100  # audits of one model shown in its run history


def _keys_page(
    request: Request, scope: DashScope, new_key: Any = None, status_code: int = 200
) -> HTMLResponse:
    web = request.state.web
    keys = [KeyOut.of(r) for r in keys_service.list_keys(scope.session, tenant_id=scope.tenant_id)]
    context = {"keys": keys, "new_key": new_key, "current_key": web.key_id}
    return render(request, "keys.html", context, status_code)


@router.get("/keys")
def keys_page(request: Request, scope: DashScope) -> HTMLResponse:
    return _keys_page(request, scope)


@router.post("/keys")
def create_key(
    request: Request,
    web: WebSessionDep,
    scope: DashScope,
    name: Annotated[str, Form(max_length=100)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> HTMLResponse:
    """The new secret is rendered once, in this response only (never stored in clear)."""
    check_csrf(web, csrf)
    new = keys_service.create_key(scope.session, tenant_id=scope.tenant_id, name=name.strip())
    row = scope.get(ApiKey, new.id, "API key")
    created = NewKeyOut(**KeyOut.of(row).model_dump(), key=new.key)
    response = _keys_page(request, scope, new_key=created, status_code=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    key_id: str, web: WebSessionDep, scope: DashScope, csrf: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    check_csrf(web, csrf)
    keys_service.revoke_key(scope.session, tenant_id=scope.tenant_id, key_id=key_id)
    # revoking the key this session signed in with ends the session at the next page
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)


def _model(scope: DashScope, model_id: str) -> ModelRecord:
    return scope.get(ModelRecord, model_id, "model")


@router.get("/models")
def models_page(request: Request, scope: DashScope) -> HTMLResponse:
    rows = models_service.list_models(scope.session, tenant_id=scope.tenant_id)
    jobs = audits_service.history_by_model(
        scope.session, tenant_id=scope.tenant_id, model_ids=[m.id for m in rows], limit=HISTORY
    )
    histories = {m.id: [AuditOut.of(job) for job in jobs[m.id]] for m in rows}
    models = [ModelOut.of(m) for m in rows]
    return render(request, "models.html", {"models": models, "histories": histories})


@router.get("/models/{model_id}")
def model_page(request: Request, model_id: str, scope: DashScope) -> HTMLResponse:
    """One model's run history: every audit of it, oldest to newest, with each audit's verdict, so a
    trend across retrainings shows at a glance; consecutive runs link to their comparison."""
    model = ModelOut.of(_model(scope, model_id))
    history = audits_service.history_by_model(
        scope.session, tenant_id=scope.tenant_id, model_ids=[model_id], limit=HISTORY
    )[model_id]
    results = audits_service.results_by_job(scope.session, job_ids=[job.id for job in history])
    runs = [AuditOut.of(job, results[job.id]) for job in reversed(history)]
    names = sorted({r.name for run in runs for r in run.results})
    return render(request, "model.html", {"model": model, "runs": runs, "names": names})


@router.post("/models/{model_id}/delete")
def delete_model(
    model_id: str,
    web: WebSessionDep,
    scope: DashScope,
    store: StoreDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    check_csrf(web, csrf)
    models_service.delete_model(scope.session, store, row=_model(scope, model_id))
    return RedirectResponse(f"{PREFIX}/models", status_code=303)
