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
    import json

    import timm
    import torch
    from safetensors.torch import save_file

    import auditors.models  # noqa: F401  (registers the tiny archs)
    from auditors.synthetic import generate, parse_synthetic
    from auditors.training import train_classifier
    from tests.fixtures.service import TinyModel

    torch.set_num_threads(2)
    spec = parse_synthetic(SHORTCUT_REF)
    data = generate(spec)
    torch.manual_seed(0)
    model = timm.create_model("occulta_resnet_tiny", num_classes=spec.classes)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train_classifier(model, data.images, data.labels, mean=mean, std=std, epochs=3, seed=0)
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("shortcut-model")
    weights = folder / "shortcut.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = folder / "card.json"
    card.write_text(
        json.dumps(
            {
                "name": "shortcut-shapes",
                "arch": "occulta_resnet_tiny",
                "arch_kwargs": {"num_classes": spec.classes},
                "weights": weights.name,
                "input_size": [3, 32, 32],
                "mean": list(mean),
                "std": list(std),
                "class_names": spec.class_names,
            }
        )
    )
    return TinyModel(card=card, weights=weights, data_ref=SHORTCUT_REF)
