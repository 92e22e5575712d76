"""`occulta admin ...`: operator commands that talk to the database directly."""

from __future__ import annotations

from typing import Annotated

import typer

from occulta.cli.app import app

admin = typer.Typer(help="Operator commands (run where the database is reachable).", no_args_is_help=True)
app.add_typer(admin, name="admin")


@admin.command("create-key")
def create_key(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new.")],
    name: Annotated[str, typer.Option(help="A label for the key, e.g. ci-github.")] = "",
) -> None:
    """Create an API key for a tenant and print it (it is stored hashed: this is the only time it shows)."""
    from occulta.db import make_engine, make_session_factory
    from occulta.db.migrate import check_schema
    from occulta.service.keys import create_tenant_key
    from occulta.settings import Settings

    settings = Settings()
    settings.ensure_dirs()
    engine = make_engine(settings.database_url)
    check_schema(engine)
    with make_session_factory(engine)() as session:
        new = create_tenant_key(session, tenant=tenant, name=name)
    engine.dispose()
    typer.echo(new.key)
    typer.echo(
        f"key {new.id} for tenant {tenant!r} ({new.tenant_id}); store it now, it is not shown again", err=True
    )
