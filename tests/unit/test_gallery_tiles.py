"""Heat-map gallery tiles say what the model saw: true class, prediction and confidence when the
artifact ships them, under a colour bar that matches the maps (diverging for signed maps)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np

from api.dashboard import heatmaps
from api.dashboard.web import templates
from tests.gate.reports import make_report


def npz(signed: bool) -> bytes:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 8, 8)) if signed else rng.random((3, 8, 8))
    out = io.BytesIO()
    np.savez(
        out,
        gradient=maps.astype(np.float16),
        images=np.zeros((3, 3, 8, 8), np.uint8),
        predicted=np.array([0, 1, 1], np.int16),
        labels=np.array([0, 0, -1], np.int16),
        confidence=np.array([0.97, 0.61, 0.88], np.float16),
    )
    return out.getvalue()


def gallery(signed: bool) -> str:
    report = make_report()
    found = heatmaps.describe("spurious_signal/saliency_maps.npz", npz(signed))
    assert found is not None
    return templates.env.get_template("_gallery.html").render(
        report=report,
        a=SimpleNamespace(name="spurious_signal", artifacts=[]),
        audit=SimpleNamespace(id="aud_1"),
        mapsets={"spurious_signal": [found]},
        prefix="/dashboard",
    )


def test_describe_reads_labels_confidence_and_whether_maps_are_signed() -> None:
    found = heatmaps.describe("m.npz", npz(signed=True))
    assert found is not None
    assert found.labels == (0, 0, -1) and found.predicted == (0, 1, 1) and found.signed
    assert [round(c, 2) for c in found.confidence] == [0.97, 0.61, 0.88]


def test_tiles_show_true_class_prediction_and_confidence_and_mark_a_mistake() -> None:
    html = " ".join(gallery(signed=False).split())
    assert '<span class="muted">true</span> a<br>' in html
    assert '<span class=""><span class="muted">pred</span> a 97%</span>' in html
    assert '<span class="bad"><span class="muted">pred</span> b 61%</span>' in html, (
        "a wrong prediction stands out"
    )
    assert html.count("data-tile-caption") == 3
    assert 'class="cbar seq"' in html


def test_signed_maps_get_a_diverging_colour_bar() -> None:
    assert 'class="cbar div"' in gallery(signed=True)
