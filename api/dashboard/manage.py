"""Dashboard pages for what the API already manages: API keys (create, revoke) and models (list with
their audit history and verdict trend, delete). Each handler calls the /v1 route function, so
tenancy, the one-time display of a new key and the 409 for a model still in use are the API's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.dashboard.session import DashScope, WebSessionDep, check_csrf
from api.dashboard.web import PREFIX, PageRoute, render
from api.deps import StoreDep
from api.routes import audits as audits_api
from api.routes import keys as keys_api
from api.routes import models as models_api
from api.schemas import AuditOut, KeyIn

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)
HISTORY = 100  # audits of one model shown in its run history


def _keys_page(
    request: Request, scope: DashScope, new_key: Any = None, status_code: int = 200
) -> HTMLResponse:
    web = request.state.web
    context = {"keys": keys_api.list_keys(scope), "new_key": new_key, "current_key": web.key_id}
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
    created = keys_api.create_key(scope, KeyIn(name=name.strip()))
    response = _keys_page(request, scope, new_key=created, status_code=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    key_id: str, web: WebSessionDep, scope: DashScope, csrf: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    check_csrf(web, csrf)
    keys_api.revoke_key(key_id, scope)
    # revoking the key this session signed in with ends the session at the next page
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)


def _history(scope: DashScope, model_id: str) -> list[AuditOut]:
    return audits_api.list_audits(
        scope, status=None, model_id=model_id, verdict=None, limit=HISTORY, cursor=None
    ).items


@router.get("/models")
def models_page(request: Request, scope: DashScope) -> HTMLResponse:
    models = models_api.list_models(scope)
    histories = {m.id: _history(scope, m.id) for m in models}
    return render(request, "models.html", {"models": models, "histories": histories})


@router.get("/models/{model_id}")
def model_page(request: Request, model_id: str, scope: DashScope) -> HTMLResponse:
    """One model's run history: every audit of it, oldest to newest, with each audit's verdict, so a
    trend across retrainings shows at a glance; consecutive runs link to their comparison."""
    model = models_api.get_model(model_id, scope)
    runs = [audits_api.get_audit(run.id, scope) for run in reversed(_history(scope, model_id))]
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
    models_api.delete_model(model_id, scope, store)
    return RedirectResponse(f"{PREFIX}/models", status_code=303)
