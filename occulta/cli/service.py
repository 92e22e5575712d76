"""Service commands: `occulta serve` (everything on one machine), `api`, `worker`, `beat`, `migrate`.

The API and worker are started by module path (uvicorn factory string, `python -m celery`), so the
`occulta` package never imports fastapi, celery or the api/worker packages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from occulta.cli.app import app

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the embedded database and objects live (OCCULTA_DATA_DIR)."),
]


def _settings(data_dir: Path | None = None):  # type: ignore[no-untyped-def]
    from occulta.settings import Settings

    if data_dir is not None:
        os.environ["OCCULTA_DATA_DIR"] = str(data_dir.expanduser().resolve())
    settings = Settings()
    settings.ensure_dirs()
    return settings


def ensure_local_secret(data_dir: Path) -> None:
    """Give `occulta serve` a random signing secret, kept in its data folder (mode 0600), unless
    OCCULTA_SECRET_KEY is set. The built-in development value would let anyone who has read this code
    forge a dashboard session cookie for any local instance."""
    if os.environ.get("OCCULTA_SECRET_KEY"):
        return
    import secrets

    path = data_dir / "secret_key"
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    os.environ["OCCULTA_SECRET_KEY"] = path.read_text().strip()


def _celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", *args]


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Upgrade the database schema to the latest revision (safe to run repeatedly)."""
    from occulta.db.migrate import head_revision, upgrade

    settings = _settings(data_dir)
    upgrade(settings.database_url)
    typer.echo(f"database at revision {head_revision()}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Run the whole service on this machine: SQLite, objects on disk, Celery over SQLAlchemy, one worker
    process beside the API. Migrates first and prints the URL and, on first start, an API key."""
    import uvicorn

    from occulta.db import make_engine, make_session_factory
    from occulta.db.migrate import upgrade
    from occulta.service.keys import create_tenant_key, has_any_key

    settings = _settings(data_dir)
    os.environ["OCCULTA_DATA_DIR"] = str(settings.data_dir)
    ensure_local_secret(settings.data_dir)  # inherited by the API and the worker process
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        first = None if has_any_key(session) else create_tenant_key(session, tenant="default", name="serve")
    engine.dispose()

    worker = subprocess.Popen(
        _celery_argv(
            "worker",
            "--concurrency=1",
            "--loglevel=INFO",
            "-Q",
            settings.queue,
            "-B",
            "--schedule",
            str(settings.data_dir / "celerybeat-schedule"),
        ),
    )
    url = f"http://{host}:{port}"
    typer.echo(f"Occulta is running at {url}  (API docs: {url}/docs)")
    typer.echo(f"data: {settings.data_dir}")
    if first is not None:
        typer.echo(f"API key (shown once, tenant 'default'): {first.key}")
    else:
        typer.echo("API keys already exist; make another with: occulta admin create-key --tenant default")
    # uvicorn re-raises SIGTERM after its own shutdown; turning it into SystemExit lets `finally` stop
    # the worker instead of leaving it orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="info")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the API only (production). It refuses to start on an out-of-date schema: run `occulta migrate`."""
    import uvicorn

    _settings()  # fail fast on bad settings, before uvicorn forks
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, proxy_headers=True)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Child processes; one per GPU.")] = None,
    pool: Annotated[
        str, typer.Option(help="prefork (default; time limits work) or solo (one process).")
    ] = "prefork",
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker for audit jobs (replaces this process)."""
    settings = _settings()
    argv = _celery_argv(
        "worker",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        "-Q",
        settings.queue,
        f"--concurrency={concurrency or settings.worker_concurrency}",
    )
    os.execv(sys.executable, argv)


@app.command()
def beat(loglevel: Annotated[str, typer.Option()] = "INFO") -> None:
    """Run the periodic scheduler that re-queues stale jobs (run exactly one)."""
    settings = _settings()
    os.execv(
        sys.executable,
        _celery_argv(
            "beat", f"--loglevel={loglevel}", "--schedule", str(settings.data_dir / "celerybeat-schedule")
        ),
    )
