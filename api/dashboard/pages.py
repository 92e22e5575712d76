"""Dashboard pages: sign-in, the audits list, a report, a comparison and the gate. Every handler reads
data through the service functions the /v1 routes call (`occulta.service`), with a `Scope` built from
the session cookie, so tenancy, validation and errors are exactly the API's, no page has its own query,
and no page calls a route handler (one way down)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.dashboard import heatmaps
from api.dashboard.charts import charts_for, compare_rows, metric_rows, overlay
from api.dashboard.session import (
    COOKIE,
    DashScope,
    WebSessionDep,
    check_csrf,
    check_login_token,
    end_session,
    new_login_token,
    read_session,
    set_login_token,
    start_session,
)
from api.dashboard.web import PREFIX, PageRoute, render
from api.deps import SessionDep, SettingsDep, StoreDep
from api.files import artifact_file, stored_file
from api.schemas import MAX_POLICY_CHARS, AuditOut, AuditPage
from api.waiting import audit_out, status_tag, watched
from auditors.report import Report
from occulta.db import ArtifactRecord
from occulta.errors import PolicyError
from occulta.policy_init import default_policy
from occulta.report_view import ordered_audits, report_view
from occulta.service import audits as audits_service
from occulta.service import datasets as datasets_service
from occulta.service import keys
from occulta.service import models as models_service
from occulta.service.gate import gate_audit

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)
root = APIRouter(include_in_schema=False)
FINISHED = {"succeeded", "failed", "cancelled", "timed_out"}
PAGE_SIZE = 20


@root.get("/")
def home() -> RedirectResponse:
    """`occulta serve` prints the bare URL; a person opening it lands on the dashboard."""
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def _login_form(request: Request, next: str, error: str = "", status_code: int = 200) -> HTMLResponse:
    token = new_login_token()
    page = render(request, "login.html", {"next": next, "error": error, "login_csrf": token}, status_code)
    set_login_token(request, page, token)
    return page


@router.get("/login")
def login_page(request: Request, next: str = "") -> HTMLResponse:
    return _login_form(request, next)


def _safe_next(target: str) -> str:
    """Only a path on this dashboard: never an open redirect to another site."""
    return target if target.startswith(PREFIX + "/") and not target.startswith("//") else f"{PREFIX}/"


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    check_login_token(request, csrf)
    row = keys.find_active_key(session, api_key.strip())
    if row is None:
        return _login_form(request, next, "Unknown or revoked API key.", 401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    start_session(request, response, key_id=row.id, tenant_id=row.tenant_id)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    web = read_session(request)
    if web is not None:
        check_csrf(web, csrf)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    if COOKIE in request.cookies:
        end_session(response)
    return response


def _names(scope: DashScope) -> tuple[dict[str, str], dict[str, str]]:
    models = {m.id: m.name for m in models_service.list_models(scope.session, tenant_id=scope.tenant_id)}
    rows = datasets_service.list_datasets(scope.session, tenant_id=scope.tenant_id)
    return models, {d.id: d.ref for d in rows}


StatusQ = Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled|timed_out)?$")]
VerdictQ = Annotated[str | None, Query(pattern="^(pass|fail|inconclusive|error)?$")]


def _list_context(
    scope: DashScope,
    status: StatusQ = None,
    model_id: str | None = None,
    verdict: VerdictQ = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The audits table for the query's filters and page: shared by the page and its polled body."""
    rows, next_cursor = audits_service.list_audits(
        scope.session,
        tenant_id=scope.tenant_id,
        status=status or None,
        model_id=model_id or None,
        verdict=verdict or None,
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )
    page = AuditPage(items=[AuditOut.of(r) for r in rows], next_cursor=next_cursor)
    filters = {k: v for k, v in {"status": status, "model_id": model_id, "verdict": verdict}.items() if v}
    models, datasets = _names(scope)
    return {
        "page": page,
        "filters": filters,
        "query": urlencode(filters | ({"cursor": cursor} if cursor else {})),
        "next_query": urlencode(filters | {"cursor": page.next_cursor}) if page.next_cursor else "",
        "first_query": urlencode(filters),
        "cursor": cursor,
        "models": models,
        "datasets": datasets,
        "live": any(a.status not in FINISHED for a in page.items),
    }


ListContext = Annotated[dict[str, Any], Depends(_list_context)]


@router.get("/")
def audits_page(request: Request, context: ListContext) -> HTMLResponse:
    return render(request, "audits.html", context)


@router.get("/audits/rows")
def audit_rows(request: Request, context: ListContext) -> HTMLResponse:
    """The table body alone, polled by htmx while any listed audit is unfinished."""
    return render(request, "_rows.html", context)


def _artifact(scope: DashScope, audit_id: str, path: str) -> ArtifactRecord:
    return audits_service.find_artifact(
        scope.session, tenant_id=scope.tenant_id, audit_id=audit_id, path=path
    )


def _report(scope: DashScope, store: StoreDep, audit_id: str) -> Report:
    return audits_service.load_report(scope.session, store, tenant_id=scope.tenant_id, audit_id=audit_id)


def _mapsets(audit_id: str, report: Report, scope: DashScope, store: StoreDep) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for audit in report.audits:
        for art in audit.artifacts:
            if art.path.endswith(".npz"):
                row = _artifact(scope, audit_id, art.path)
                found = heatmaps.describe(art.path, store.read_bytes(row.storage_key))
                if found is not None:
                    out.setdefault(audit.name, []).append(found)
    return out


@router.get("/audits/{audit_id}")
def report_page(request: Request, audit_id: str, scope: DashScope, store: StoreDep) -> HTMLResponse:
    audit = audit_out(scope, audit_id)
    models, datasets = _names(scope)
    context: dict[str, Any] = {"audit": audit, "models": models, "datasets": datasets}
    if audit.status != "succeeded":
        return render(request, "pending.html", context | {"tag": status_tag(audit)})
    report = _report(scope, store, audit_id)
    mapsets = _mapsets(audit_id, report, scope, store)
    any_maps = next((m for sets in mapsets.values() for m in sets), None)
    context |= {
        "report": report,
        "view": report_view(report),
        "ordered": ordered_audits(report),
        "size": (report.model.input_size[2], report.model.input_size[1]),
        "charts": {a.name: charts_for(a) for a in report.audits},
        "metrics": {a.name: metric_rows(a) for a in report.audits},
        "mapsets": mapsets,
        "finding_maps": {a.name: (mapsets.get(a.name) or [any_maps])[0] for a in report.audits},
    }
    return render(request, "report.html", context)


@router.get("/audits/{audit_id}/status")
async def audit_status(
    request: Request,
    audit_id: str,
    scope: DashScope,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=120)] = 0,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Long-polled by the pending page (answers when the status changes); once the audit has
    finished the browser reloads into the report."""
    hold = min(wait, settings.wait_max_seconds)
    audit, tag = await watched(request, audit_id, scope, hold, since)
    if audit.status in FINISHED:
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return render(request, "_status.html", {"audit": audit, "tag": tag})


@router.post("/audits/{audit_id}/cancel")
def cancel(
    audit_id: str, web: WebSessionDep, scope: DashScope, csrf: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    check_csrf(web, csrf)
    audits_service.cancel_audit(scope.session, tenant_id=scope.tenant_id, audit_id=audit_id)
    return RedirectResponse(f"{PREFIX}/audits/{audit_id}", status_code=303)


# The report files a person downloads, by file name: which stored file (`audits_service.REPORT_FILES`).
DOWNLOADS = {"report.json": "report", "report.html": "report.html", "summary.md": "report.md"}


@router.get("/audits/{audit_id}/download/{name}")
def download(audit_id: str, name: str, scope: DashScope, store: StoreDep) -> Response:
    which = DOWNLOADS.get(name)
    if which is None:
        return Response(status_code=404)
    key, media_type = audits_service.report_file(
        scope.session, store, tenant_id=scope.tenant_id, audit_id=audit_id, which=which
    )
    response = stored_file(store, key, media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{audit_id}-{name}"'
    return response


@router.get("/audits/{audit_id}/artifacts/{path:path}")
def artifact(audit_id: str, path: str, scope: DashScope, store: StoreDep, settings: SettingsDep) -> Response:
    row = _artifact(scope, audit_id, path)
    return artifact_file(store, row, expires=settings.presign_expiry_seconds)


@router.get("/audits/{audit_id}/maps/{path:path}")
def heatmap(
    audit_id: str,
    path: str,
    scope: DashScope,
    store: StoreDep,
    key: Annotated[str, Query(max_length=100)],
    index: Annotated[int, Query(ge=-1, le=100_000)] = -1,
) -> Response:
    """One map of an `.npz` artifact as a PNG; index -1 is the mean magnitude over the images."""
    row = _artifact(scope, audit_id, path)
    png = heatmaps.render_png(store.read_bytes(row.storage_key), key, index)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _finished(scope: DashScope) -> list[AuditOut]:
    rows, _ = audits_service.list_audits(
        scope.session, tenant_id=scope.tenant_id, status="succeeded", limit=100
    )
    return [AuditOut.of(r) for r in rows]


def _verdict_of(report: Report, name: str) -> str | None:
    result = report.audit(name)
    return result.verdict if result else None


@router.get("/compare")
def compare_page(
    request: Request, scope: DashScope, store: StoreDep, a: str = "", b: str = ""
) -> HTMLResponse:
    models, _ = _names(scope)
    context: dict[str, Any] = {"choices": _finished(scope), "a": a, "b": b, "models": models}
    if a and b:
        left, right = _report(scope, store, a), _report(scope, store, b)
        names = [x.name for x in left.audits] + [x.name for x in right.audits if left.audit(x.name) is None]
        context |= {
            "left": left,
            "right": right,
            "sides": {"A": audit_out(scope, a), "B": audit_out(scope, b)},
            "rows": [
                {
                    "name": n,
                    "a": left.audit(n),
                    "b": right.audit(n),
                    "charts": overlay(left.audit(n), right.audit(n)),
                    "metrics": compare_rows(left.audit(n), right.audit(n)),
                }
                for n in names
            ],
        }
        context["changed_audits"] = sum(_verdict_of(left, n) != _verdict_of(right, n) for n in names)
        # changed audits first: what a reviewer opens the comparison for
        context["rows"].sort(key=lambda row: not any(m["diff"] for m in row["metrics"]))
    return render(request, "compare.html", context)


def _default_policy(choices: list[AuditOut], audit_id: str) -> str:
    """`occulta policy init`'s policy for the chosen audit's battery (all built-ins when none is
    chosen), so the dashboard, the CLI and the docs start every user from the same thresholds."""
    chosen = next((c for c in choices if c.id == audit_id), choices[0] if choices else None)
    return default_policy(chosen.audits if chosen else None)


@router.get("/gate")
def gate_page(request: Request, scope: DashScope, audit: str = "") -> HTMLResponse:
    choices = _finished(scope)
    policy = _default_policy(choices, audit)
    context = {"choices": choices, "audit_id": audit, "policy": policy, "result": None}
    return render(request, "gate.html", context)


@router.post("/gate")
def run_gate(
    request: Request,
    web: WebSessionDep,
    scope: DashScope,
    store: StoreDep,
    audit_id: Annotated[str, Form(max_length=100)],
    policy: Annotated[str, Form(max_length=MAX_POLICY_CHARS)],
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> HTMLResponse:
    check_csrf(web, csrf)
    context: dict[str, Any] = {"choices": _finished(scope), "audit_id": audit_id, "policy": policy}
    try:
        result = gate_audit(scope.session, store, tenant_id=scope.tenant_id, audit_id=audit_id, policy=policy)
    except PolicyError as exc:
        return render(request, "gate.html", context | {"result": None, "error": exc.message}, 422)
    return render(request, "gate.html", context | {"result": result})
