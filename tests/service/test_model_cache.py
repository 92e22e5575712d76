"""A worker child keeps the job's model loaded across its shards: one load per (model, sha, device),
the least recently used model dropped past `model_cache_size`."""

from __future__ import annotations

import pytest

from occulta.cards import load_card
from worker import models

pytestmark = pytest.mark.service


@pytest.fixture
def cache(worker_resources):  # type: ignore[no-untyped-def]
    models.clear()
    before = dict(models.STATS)
    yield before
    models.clear()


def test_the_shards_of_one_model_load_it_once(cache, tiny_model) -> None:  # type: ignore[no-untyped-def]
    card = load_card(tiny_model.card)
    first = models.cached_loader("mdl_a:sha1")(card, tiny_model.card, "cpu")
    second = models.cached_loader("mdl_a:sha1")(card, tiny_model.card, "cpu")
    assert first is second
    assert models.STATS["loads"] - cache["loads"] == 1 and models.STATS["hits"] - cache["hits"] == 1
    assert not first.training


def test_a_new_model_or_new_weights_is_loaded_and_evicts_the_oldest(
    cache, tiny_model, worker_resources
) -> None:  # type: ignore[no-untyped-def]
    assert worker_resources.settings.model_cache_size == 1
    card = load_card(tiny_model.card)
    a = models.cached_loader("mdl_a:sha1")(card, tiny_model.card, "cpu")
    b = models.cached_loader("mdl_a:sha2")(card, tiny_model.card, "cpu")  # re-uploaded weights
    again = models.cached_loader("mdl_a:sha1")(card, tiny_model.card, "cpu")
    assert a is not b and again is not a
    assert models.STATS["loads"] - cache["loads"] == 3
