"""A per-process cache of loaded models, so a worker child that runs several shards (or audits) of one
model loads it once instead of once per task.

Keyed by (model id + weights sha256, device): a re-uploaded model is a new key. At most
`model_cache_size` models stay loaded; the least recently used one is dropped (and CUDA's cached
blocks released). Only ever used inside a task, in the worker child: the prefork parent never imports
torch (a parent that initialised CUDA or torch's thread pools deadlocks its forked children).
Auditors run the model in eval mode without changing its weights, so reuse is safe; hooks they add
are removed by the auditors themselves.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.base import resources

if TYPE_CHECKING:
    from occulta.cards import ModelCard
    from occulta.runner import ModelLoader

_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
STATS = {"hits": 0, "loads": 0}


def cached_loader(model_key: str) -> ModelLoader:
    """A `ModelLoader` for the runner that serves `model_key` from this process's cache."""

    def load(card: ModelCard, card_path: Path, device: str) -> Any:
        from occulta.runner import load_prepared

        key = (model_key, device)
        if key in _CACHE:
            _CACHE.move_to_end(key)
            STATS["hits"] += 1
            return _CACHE[key]
        model = load_prepared(card, card_path, device)
        STATS["loads"] += 1
        size = resources().settings.model_cache_size
        if size > 0:
            _CACHE[key] = model
            while len(_CACHE) > size:
                _CACHE.popitem(last=False)
                _release_cuda(device)
        return model

    return load


def _release_cuda(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def clear() -> None:
    _CACHE.clear()
