"""What every dashboard page shares: the templates, the HTML error pages and the security headers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader

from api.dashboard.session import CsrfError, SignInRequiredError
from api.errors import status_for
from occulta.errors import OccultaError

PREFIX = "/dashboard"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
# Partials shared with the static report (e.g. `_sample.html.j2`) come from occulta's templates.
templates.env.loader = ChoiceLoader(
    [FileSystemLoader(str(HERE / "templates")), PackageLoader("occulta", "templates")]
)

# Scripts and styles only from this origin (the vendored files); images may come from a presigned
# S3 URL in production, so any http(s) origin is allowed for images only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "—"
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    end = end or datetime.now(UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    seconds = max(0, int((end - start).total_seconds()))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _elapsed_and_eta(start: datetime | None, progress: float) -> str:
    """`1m 15s elapsed · about 20s left`: a linear estimate from the progress so far, shown only once
    there is enough progress for it to mean something (a bar stuck at 82% at least shows time passing)."""
    if start is None:
        return ""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    seconds = max(0.0, (datetime.now(UTC) - start).total_seconds())
    text = f"{_duration(start, None)} elapsed"
    if 0.05 <= progress < 1 and seconds >= 3:
        left = int(seconds * (1 - progress) / progress)
        text += f" · about {_duration(start, start + timedelta(seconds=left))} left"
    return text


def _delta(a: Any, b: Any) -> str:
    """B − A for two numbers (signed, 3 significant digits); `changed` for anything else that differs."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numbers:
        return "—" if a is None or b is None else "changed"
    diff = b - a
    return "0" if diff == 0 else f"{diff:+.3g}"


templates.env.filters["fmt"] = _fmt
templates.env.globals["delta"] = _delta
templates.env.globals["elapsed"] = _elapsed_and_eta
templates.env.globals["duration"] = _duration
templates.env.globals["prefix"] = PREFIX


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    web = getattr(request.state, "web", None)
    ctx = {"web": web, "csrf": web.csrf if web else "", **context}
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {404: "Not found", 403: "Forbidden", 422: "Invalid input"}
    return render(
        request,
        "error.html",
        {"title": titles.get(status, "Something went wrong"), "status": status, "message": message},
        status_code=status,
    )


class PageRoute(APIRoute):
    """Dashboard routes answer with pages, not JSON: a missing session redirects to sign-in, a domain
    error (another tenant's audit included) becomes the same error page with the API's status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequiredError:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.headers.get("HX-Request"):
                    return Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/login"})
                return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
            except CsrfError as exc:
                response = error_page(request, 403, exc.message)
            except OccultaError as exc:
                response = error_page(request, status_for(exc), exc.message)
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors()[:3]
                )
                response = error_page(request, 422, detail)
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            if isinstance(response, HTMLResponse):
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        return page
