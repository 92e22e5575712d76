"""The API docs (`/docs`) served from the package, so they render on a machine without internet.

FastAPI's default pages load Swagger UI and ReDoc from a CDN and show a blank page offline. Swagger
UI's bundle and stylesheet are vendored beside the dashboard's scripts (see
api/dashboard/static/VENDORED.md); `/redoc` would need a second vendored bundle and web fonts, so it
points to `/docs` instead.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.routing import BaseRoute, Route

from api.dashboard.web import PREFIX

VENDOR = f"{PREFIX}/static/vendor"
DOCS, REDIRECT, REDOC = "/docs", "/docs/oauth2-redirect", "/redoc"


def _docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{VENDOR}/swagger-ui.css",
        swagger_favicon_url=f"{root}{VENDOR}/swagger-ui-favicon-32x32.png",
        oauth2_redirect_url=f"{root}{REDIRECT}",
        # the online validator badge is an image from validator.swagger.io: no request leaves the host
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


def _oauth2_redirect(request: Request) -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


def _redoc(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}{DOCS}", status_code=307)


def _is_default_docs_route(route: BaseRoute) -> bool:
    return isinstance(route, Route) and route.path in (DOCS, REDIRECT, REDOC)


def install(app: FastAPI) -> None:
    """Replace FastAPI's CDN-backed doc pages (added when the app is built) with the packaged ones."""
    app.router.routes[:] = [r for r in app.router.routes if not _is_default_docs_route(r)]
    app.add_route(DOCS, _docs, include_in_schema=False)
    app.add_route(REDIRECT, _oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC, _redoc, include_in_schema=False)
