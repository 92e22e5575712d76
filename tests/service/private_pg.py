"""A private PostgreSQL server in a temp dir, for tests that stop and start the database (the machine's
shared server is never touched). As root the server runs as the `postgres` user, as PostgreSQL insists."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.service import free_port


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        pytest.skip(f"PostgreSQL's {name} is not installed")
    return found


@dataclass
class PrivatePostgres:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -h 127.0.0.1 -c fsync=off"
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-o",
            options,
            "-w",
            "-l",
            str(self.folder / "log"),
            "start",
        )

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """initdb + start on a free port in a fresh folder of the system temp dir (which the postgres user
    can reach, unlike pytest's private one); stopped and removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="occulta-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    pg = PrivatePostgres(folder, free_port())
    try:
        pg._run(_bin("initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
        pg.start()
        try:
            yield pg
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                pg.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
