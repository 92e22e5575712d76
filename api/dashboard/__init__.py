"""The dashboard: server-rendered pages served by the API app itself (no second server to run)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.dashboard import launch, manage, pages
from api.dashboard.web import HERE, PREFIX


def install(app: FastAPI) -> None:
    """Mount the pages and the vendored static files (nothing is fetched at run time)."""
    app.include_router(pages.root)
    app.include_router(pages.router)
    app.include_router(launch.router)
    app.include_router(manage.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
