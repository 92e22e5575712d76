"""Browser fixtures: the embedded stack as real processes (tests/fixtures/service.py) and Debian's
Chromium driven by Playwright. A missing browser or driver fails loudly: these tests never skip."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.service import *  # noqa: F403
from tests.fixtures.service import Stack, embedded_env, run_stack, settings_from

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("dashboard")
    with run_stack(embedded_env(root / "data"), log_dir=root / "logs") as running:
        yield running


@pytest.fixture(scope="module")
def other_tenant_key(stack: Stack) -> str:
    from occulta.db import make_engine, make_session_factory
    from occulta.service.keys import create_tenant_key

    engine = make_engine(settings_from(stack.env).database_url)
    with make_session_factory(engine)() as session:
        key = create_tenant_key(session, tenant=f"other-{secrets.token_hex(3)}").key
    engine.dispose()
    return key


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright's Python package is missing: pip install 'occulta[dev]'", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


SHORTCUT_REF = "synthetic:shapes?classes=4&size=32&n=1024&artifact=square&artifact_class=0&fraction=1&seed=3"


@pytest.fixture(scope="module")
def shortcut_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Like `tiny_model`, trained on enough images that the planted corner square is what decides
    'circle' (the 2-epoch fixture model learns it too weakly for spurious_signal to confirm it)."""
    from tests.fixtures.service import train_tiny_model

    folder = tmp_path_factory.mktemp("shortcut-model")
    return train_tiny_model(folder, SHORTCUT_REF, epochs=3, name="shortcut-shapes", threads=2)
