"""A typed HTTP client for the Occulta REST API, the one the CI commands use.

Errors come back as the same domain exceptions the service raised (the body is
`{"error": {"code", "message"}}`), so a CLI prints the server's own message. An unreachable service or a
5xx is a `ServiceError`: the gate treats it as "no verdict" and fails closed. Only calls that are safe to
repeat (GETs, audit creation under an Idempotency-Key, gate evaluation) are retried on 502/503/504 and
dropped connections; a refused connection is retried for every call because nothing was sent.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from auditors.report import Report, Verdict
from occulta import errors
from occulta.errors import OccultaError, ServiceError
from occulta.gate import GateResult

AuditState = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
M = TypeVar("M", bound=BaseModel)
_RETRY_STATUS = frozenset({502, 503, 504})
LONG_POLL_SECONDS = 25.0  # under common proxies' 30 s idle timeouts
_ERRORS_BY_CODE: dict[str, type[OccultaError]] = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, OccultaError) and cls is not OccultaError
}


class Created(BaseModel):
    """What the service answers for a new model or dataset; other fields are kept as sent. `new` is
    False when the service answered with one it already had (the same checkpoint uploaded again)."""

    model_config = ConfigDict(extra="allow")
    id: str
    new: bool = True


class AuditStatus(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    status: AuditState
    progress: float = 0.0
    message: str | None = None
    verdict: Verdict | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATES


class OccultaClient:
    """Talks to one Occulta server with one API key (`Authorization: Bearer occ_...`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int | None = None,
        backoff: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("OCCULTA_URL")
        api_key = api_key or os.environ.get("OCCULTA_API_KEY")
        if not base_url:
            raise OccultaError("no server given: pass --url or set OCCULTA_URL", code="usage")
        if not api_key:
            raise OccultaError("no API key given: pass --api-key or set OCCULTA_API_KEY", code="usage")
        base_url = check_url(base_url)
        # CI jobs tune these without new flags: OCCULTA_RETRIES, OCCULTA_RETRY_BACKOFF (seconds, doubled)
        self.retries = retries if retries is not None else int(_env_number("OCCULTA_RETRIES", 3))
        self.backoff = backoff if backoff is not None else _env_number("OCCULTA_RETRY_BACKOFF", 0.5)
        self._last_status = 0  # of the latest answer: tells a new upload (201) from a known one (200)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "occulta-cli"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OccultaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ routes

    def upload_model(self, card: Path, weights: Path | None = None) -> Created:
        """`POST /v1/models`: the card and (optionally) the checkpoint, streamed as multipart files.
        201 is a new model; 200 is the tenant's existing model with the same checkpoint and card."""
        paths = {"card": card} | ({"weights": weights} if weights else {})
        body = self._request("POST", "/v1/models", files=paths, expect=201)
        return Created.model_validate(body).model_copy(update={"new": self._last_status == 201})

    def delete_model(self, model_id: str) -> None:
        """`DELETE /v1/models/{id}` (refused with 409 while an unfinished audit uses it)."""
        self._request("DELETE", f"/v1/models/{model_id}", idempotent=True, expect=204)

    def delete_dataset(self, dataset_id: str) -> None:
        """`DELETE /v1/datasets/{id}` (refused with 409 while an unfinished audit uses it)."""
        self._request("DELETE", f"/v1/datasets/{dataset_id}", idempotent=True, expect=204)

    def register_dataset(self, ref: str) -> Created:
        """`POST /v1/datasets` with a reference (`synthetic:...`, `s3://` in the tenant's space, ...)."""
        return Created.model_validate(
            self._request("POST", "/v1/datasets", json={"ref": ref}, idempotent=True, expect=201)
        )

    def upload_dataset(self, archive: Path) -> Created:
        """`POST /v1/datasets` with an ImageFolder/WebDataset archive as the multipart `archive` file."""
        return Created.model_validate(
            self._request("POST", "/v1/datasets", files={"archive": archive}, expect=201)
        )

    def create_audit(
        self,
        *,
        model_id: str,
        dataset_id: str,
        audits: list[str],
        config: dict[str, Any] | None = None,
        samples: int | None = None,
        seed: int | None = None,
        regions: list[dict[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> AuditStatus:
        """`POST /v1/audits`; the Idempotency-Key makes a retried request create the audit only once."""
        body: dict[str, Any] = {
            "model_id": model_id,
            "dataset_id": dataset_id,
            "audits": audits,
            "config": config or {},
            "regions": regions or [],
        }
        body |= {k: v for k, v in (("samples", samples), ("seed", seed)) if v is not None}
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        data = self._request("POST", "/v1/audits", json=body, headers=headers, idempotent=True, expect=202)
        return self._parse(AuditStatus, data)

    def get_audit(self, audit_id: str) -> AuditStatus:
        return self._parse(AuditStatus, self._request("GET", f"/v1/audits/{audit_id}", idempotent=True))

    def get_report(self, audit_id: str) -> Report:
        data = self._request("GET", f"/v1/audits/{audit_id}/report", idempotent=True)
        return self._parse(Report, data)

    def download(self, audit_id: str, name: str) -> bytes:
        """A report file (`report.html`, `report.md`) or `artifacts/<path>` as bytes; artifacts on S3
        answer with a presigned redirect, followed without the API key (httpx drops it cross-origin)."""
        url = f"/v1/audits/{audit_id}/{name}"
        for attempt in range(self.retries + 1):
            try:
                response = self._http.get(url, follow_redirects=True)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServiceError(f"GET {url} failed: {exc}") from exc
            else:
                if response.status_code in _RETRY_STATUS and attempt < self.retries:
                    response.close()
                elif response.status_code == 200:
                    return response.content
                else:
                    self._decode(response, 200)  # raises the service's error
                    raise ServiceError(f"GET {url}: unexpected answer {response.status_code}")
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def gate(self, audit_id: str, policy: str) -> GateResult:
        """`POST /v1/gate`: the server evaluates the policy text against the audit's stored report."""
        body = {"audit_id": audit_id, "policy": policy}
        return self._parse(GateResult, self._request("POST", "/v1/gate", json=body, idempotent=True))

    def wait(
        self,
        audit_id: str,
        *,
        timeout: float = 3600.0,
        interval: float = 2.0,
        on_progress: Callable[[AuditStatus], None] | None = None,
    ) -> AuditStatus:
        """Wait until the audit reaches a terminal state; past `timeout` it is a `ServiceError`.

        Long-polls (`GET /v1/audits/{id}?wait=N&since=<ETag>`): the server answers as soon as the status
        or progress changes, so progress shows at once and a finished audit is seen within a tick, at a
        few requests a minute. A server without long-polling answers at once (no ETag): then poll
        every `interval` seconds."""
        deadline = time.monotonic() + timeout
        since: str | None = None
        while True:
            hold = max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
            status, since = self._poll(audit_id, hold, since)
            if on_progress is not None:
                on_progress(status)
            if status.done:
                return status
            if time.monotonic() >= deadline or (since is None and time.monotonic() + interval > deadline):
                raise ServiceError(
                    f"audit {audit_id} still {status.status} after {timeout:g}s; it keeps running on the "
                    f"server: `occulta wait {audit_id}` resumes waiting"
                )
            if since is None:
                time.sleep(interval)

    def _poll(self, audit_id: str, hold: float, since: str | None) -> tuple[AuditStatus, str | None]:
        """One long-poll: (status, ETag or None); retried like any GET (it is safe to repeat)."""
        params = {"wait": f"{hold:.1f}"} | ({"since": since} if since else {})
        url = f"/v1/audits/{audit_id}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.get(
                    url, params=params, timeout=(self._http.timeout.read or 30.0) + hold
                )
            except httpx.TransportError as exc:
                if last:
                    raise ServiceError(f"GET {url} failed: {exc}") from exc
            else:
                if response.status_code not in _RETRY_STATUS or last:
                    status = self._parse(AuditStatus, self._decode(response, 200))
                    return status, (response.headers.get("etag") or "").strip('"') or None
                response.close()
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _parse(model: type[M], data: Any) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ServiceError(f"the service sent an unexpected {model.__name__}: {exc}") from exc

    def _request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        files: dict[str, Path] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = False,
        expect: int = 200,
    ) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._send(method, url, json=json, files=files, headers=headers)
            except httpx.ConnectError as exc:  # nothing reached the server: always safe to retry
                if last:
                    msg = f"cannot reach the Occulta service at {self._http.base_url}: {exc}"
                    raise ServiceError(msg) from exc
            except httpx.TransportError as exc:
                if last or not idempotent:
                    raise ServiceError(f"{method} {url} failed in transit: {exc}") from exc
            else:
                if response.status_code in _RETRY_STATUS and idempotent and not last:
                    response.close()
                else:
                    self._last_status = response.status_code
                    return self._decode(response, expect)
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any,
        files: dict[str, Path] | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        if not files:
            return self._http.request(method, url, json=json, headers=headers)
        handles = {name: path.open("rb") for name, path in files.items()}  # reopened on every attempt
        try:
            parts = {name: (files[name].name, fh) for name, fh in handles.items()}
            return self._http.request(method, url, files=parts, headers=headers)
        finally:
            for fh in handles.values():
                fh.close()

    def _decode(self, response: httpx.Response, expect: int) -> Any:
        where = f"{response.request.method} {response.request.url.path}"
        if response.status_code == 204 and expect == 204:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 404 and _is_route_miss(body):
            raise errors.NotFoundError(
                f"{where} is not an Occulta API route{_path_hint(self._http.base_url)}"
            )
        if response.status_code >= 500:
            detail = _error_message(body) or response.text[:200]
            raise ServiceError(f"{where}: the service failed ({response.status_code}): {detail}")
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            message = _error_message(body) or f"HTTP {response.status_code}"
            cls = _ERRORS_BY_CODE.get(str(code), OccultaError)
            if cls is OccultaError:
                raise OccultaError(message, code=str(code or f"http_{response.status_code}"))
            raise cls(message)
        if response.status_code not in (expect, 200) or body is None:
            raise ServiceError(f"{where}: unexpected answer {response.status_code} {response.text[:200]!r}")
        return body


def check_url(url: str) -> str:
    """An http(s) URL with a host, or a usage error: a typo in OCCULTA_URL is the user's to fix, and must
    never look like an outage (which `--on-error pass` would excuse)."""
    hint = "write it like http://127.0.0.1:8000 or https://occulta.example.com"
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise OccultaError(f"server URL {url!r} is malformed ({exc}); {hint}", code="usage") from None
    if parsed.scheme not in ("http", "https"):
        what = f"scheme {parsed.scheme!r}" if parsed.scheme else "no scheme"
        raise OccultaError(f"server URL {url!r} has {what}; {hint}", code="usage")
    if not parsed.host or " " in url.strip() or "%20" in parsed.host:
        raise OccultaError(f"server URL {url!r} has no valid host; {hint}", code="usage")
    return str(parsed)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise OccultaError(f"{name}={raw!r} is not a number", code="usage") from None
    if value < 0:
        raise OccultaError(f"{name} must not be negative", code="usage")
    return value


def _is_route_miss(body: Any) -> bool:
    """A 404 for the route itself (no such path on this server), not for a missing audit or model."""
    message = _error_message(body) or ""
    return (
        not isinstance(body, dict)
        or message.lower() in ("", "not found")
        or body.get("detail") == "Not Found"
    )


def _path_hint(base: httpx.URL) -> str:
    """Where OCCULTA_URL carries a path (`.../dashboard`), say to give the server's root instead."""
    path = base.path.rstrip("/")
    if not path:
        return ""
    root = str(base.copy_with(path="/")).rstrip("/")
    return (
        f"; the server URL has the path {path!r}: give the server's root, e.g. {root} "
        "(the address `occulta serve` prints, without /dashboard), in --url or OCCULTA_URL"
    )


def _error_message(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else None
