"""Launch an audit from the browser: pick or upload a model, pick, reference or upload a dataset, choose
the battery and its main settings. Uploads go through the service functions the /v1 model and dataset
routes call; the audit is submitted by the same service call as POST /v1/audits, with the form's
idempotency key, so a double click queues one audit."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from api.dashboard.session import DashScope, WebSessionDep, check_csrf
from api.dashboard.web import PREFIX, PageRoute, render
from api.deps import QueueDep, SettingsDep, StoreDep
from api.schemas import AuditIn, DatasetOut, ModelOut
from auditors.families import NATIVE_NOTES, family_of_arch, native_of_arch, refuse_foreign_native
from auditors.regions import Region, parse_box_spec
from auditors.registry import audit_infos
from occulta.db import ModelRecord
from occulta.errors import AuditConfigError, OccultaError, WeightsError
from occulta.service import audits as audits_service
from occulta.service import datasets as datasets_service
from occulta.service import models as models_service
from occulta.service.estimates import audit_estimate

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)

STRATEGIES = ["black", "mean", "grey", "noise", "blur", "random_color", "layer_mask", "token_drop"]


def audit_choices() -> dict[str, str]:
    """name -> "Title — what it checks", for every registered audit (the registry's metadata)."""
    return {name: f"{info.title} — {info.checks}" for name, info in audit_infos().items()}


def number_fields() -> list[tuple[str, str, str]]:
    """The integer settings the form shows: (audit, config field, label), from each audit's metadata."""
    return [(name, f.field, f.label) for name, info in audit_infos().items() for f in info.form_fields]


def _form_context(scope: DashScope, **values: Any) -> dict[str, Any]:
    models = [ModelOut.of(m) for m in models_service.list_models(scope.session, tenant_id=scope.tenant_id)]
    datasets = datasets_service.list_datasets(scope.session, tenant_id=scope.tenant_id)
    return {
        "models_list": models,
        "datasets_list": [DatasetOut.of(d) for d in datasets],
        "audit_names": audit_choices(),
        "strategies": STRATEGIES,
        "strategy_notes": NATIVE_NOTES,
        "native": {m.id: native_of_arch(m.arch) or "" for m in models},
        "numbers": number_fields(),
        "idem": secrets.token_urlsafe(16),
        "v": values,
        "error": "",
    }


@router.get("/launch/native")
def native_of(arch: str, scope: DashScope) -> JSONResponse:
    """The family and native strategy of an architecture name, for the form to offer the right native
    strategy for a card being uploaded (the server's table, `auditors.families`, not a copy in JS).
    Signed-in users only, as every dashboard route (`scope`)."""
    family, _ = family_of_arch(arch)
    return JSONResponse({"arch": arch, "family": family, "native": native_of_arch(arch) or ""})


@router.get("/launch")
def launch_page(request: Request, scope: DashScope) -> HTMLResponse:
    return render(request, "launch.html", _form_context(scope))


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _file(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) and value.filename else None


def _int(form: FormData, name: str) -> int | None:
    raw = _text(form, name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise AuditConfigError(f"{name.replace('_', ' ')} must be a whole number, not {raw!r}") from None


def parse_regions(text: str) -> list[Region] | None:
    """One region per line: `x, y, w, h` or `name: x, y, w, h` (pixels, or fractions when all <= 1)."""
    regions = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            regions.append(parse_box_spec(line, f"region {n}"))
        except (ValueError, ValidationError) as exc:
            raise AuditConfigError(f"region line {n}: {str(exc).splitlines()[0]}") from None
    return regions or None


def _config(form: FormData, audits: list[str], arch: str) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {name: {} for name in audits}
    strategies = [s for s in form.getlist("strategies") if isinstance(s, str) and s in STRATEGIES]
    refused = refuse_foreign_native(arch, strategies)
    if refused:
        raise AuditConfigError(refused)
    if "missingness_bias" in config and strategies:
        config["missingness_bias"]["strategies"] = strategies
    for audit, field, _ in number_fields():
        value = _int(form, f"{audit}.{field}")
        if audit in config and value is not None:
            config[audit][field] = value
    return config


async def _model_id(form: FormData, scope: DashScope, store: StoreDep, settings: SettingsDep) -> str:
    card, weights = _file(form, "card"), _file(form, "weights")
    if card is None and weights is None:
        if not _text(form, "model_id"):
            raise OccultaError("pick an uploaded model, or upload a model card and its weights")
        return _text(form, "model_id")
    if card is None:
        raise OccultaError("the model card is missing: upload it beside the weights")
    if weights is None:
        raise WeightsError("the weights file is missing: upload the checkpoint beside the card")
    row, _ = await run_in_threadpool(
        models_service.upload_or_find_model,
        scope.session,
        store,
        settings,
        tenant_id=scope.tenant_id,
        card=card.file,
        weights=weights.file,
        name=None,
        card_filename=card.filename,
        weights_filename=weights.filename,
    )
    return row.id


async def _dataset_id(form: FormData, scope: DashScope, store: StoreDep, settings: SettingsDep) -> str:
    archive, ref = _file(form, "archive"), _text(form, "dataset_ref")
    if archive is not None:
        row = await run_in_threadpool(
            datasets_service.upload_archive,
            scope.session,
            store,
            settings,
            tenant_id=scope.tenant_id,
            archive=archive.file,
            filename=archive.filename,
        )
        return row.id
    if ref:
        row = await run_in_threadpool(
            datasets_service.register_ref, scope.session, store, tenant_id=scope.tenant_id, ref=ref
        )
        return row.id
    if not _text(form, "dataset_id"):
        raise OccultaError(
            "pick a dataset, give a reference (e.g. synthetic:shapes?...) or upload an archive"
        )
    return _text(form, "dataset_id")


def _estimate(body: AuditIn, scope: DashScope, store: StoreDep) -> dict[str, Any]:
    return audit_estimate(
        scope.session,
        store,
        tenant_id=scope.tenant_id,
        model_id=body.model_id,
        dataset_id=body.dataset_id,
        audits=body.audits,
        configs=body.config,
        samples=body.samples,
        regions=body.regions,
    )


@router.post("/launch")
async def launch(
    request: Request,
    web: WebSessionDep,
    scope: DashScope,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> Response:
    form = await request.form(max_files=3, max_fields=60)
    check_csrf(web, _text(form, "csrf"))
    audits = [a for a in form.getlist("audits") if isinstance(a, str) and a in audit_choices()]
    try:
        if not audits:
            raise AuditConfigError("choose at least one audit")
        model_id = await _model_id(form, scope, store, settings)
        arch = scope.get(ModelRecord, model_id, "model").arch
        body = AuditIn(
            model_id=model_id,
            dataset_id=await _dataset_id(form, scope, store, settings),
            audits=audits,
            config=_config(form, audits, arch),
            samples=_int(form, "samples"),
            seed=_int(form, "seed") or 0,
            regions=parse_regions(_text(form, "regions")),
        )
        if _text(form, "action") == "estimate":  # show the cost on the form; queue nothing
            estimate = await run_in_threadpool(_estimate, body, scope, store)
            values = {k: v for k, v in form.items() if isinstance(v, str)} | {
                "audits": audits,
                "strategies": form.getlist("strategies"),
                "model_id": body.model_id,
                "dataset_id": body.dataset_id,
            }
            return render(request, "launch.html", _form_context(scope, **values) | {"estimate": estimate})
        submitted = await run_in_threadpool(
            lambda: audits_service.submit_audit(
                scope.session,
                queue,
                store,
                tenant_id=scope.tenant_id,
                model_id=body.model_id,
                dataset_id=body.dataset_id,
                audits=body.audits,
                configs=body.config,
                seed=body.seed,
                samples=body.samples,
                regions=body.regions,
                idempotency_key=_text(form, "idem") or None,
                policy=queue.policy,
                interactive=True,  # a person launched it and is waiting: ahead of batch audits
            )
        )
    except (OccultaError, ValidationError) as exc:
        message = exc.message if isinstance(exc, OccultaError) else str(exc.errors()[0]["msg"])
        values = {k: v for k, v in form.items() if isinstance(v, str)} | {
            "audits": audits,
            "strategies": form.getlist("strategies"),
        }
        context = _form_context(scope, **values) | {"error": message}
        return render(request, "launch.html", context, status_code=422)
    return RedirectResponse(f"{PREFIX}/audits/{submitted.job.id}", status_code=303)
