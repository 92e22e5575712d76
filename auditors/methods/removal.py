"""Which removal strategy to use and to recommend: one rule, shared by every audit that removes pixels.

Missingness bias is a property of how pixels are removed, so its remedy is a way of removing them that
the model does not read as content: the model's *native* missingness (layer masking for a ResNet, token
dropping for a ViT) when it has one, else a fill that keeps the image's own content around the hole
(blur). A constant fill (black, grey, mean, a colour, a random colour per patch) or noise is never the
remedy, however well it happens to score on one sample: it is the very thing the bias is about.

Among candidates the rule compares the *absolute* change of the class distribution (total variation
distance between clean and masked class shares), never a signed entropy drop, which rewards the fill
that scatters predictions most.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from auditors.engine import NATIVE, parse_strategy
from auditors.methods.class_entropy import class_shares

# Pixel fills that may be recommended: neither a constant colour nor noise.
REMEDY_FILLS = ("blur",)


def is_remedy(strategy: str) -> bool:
    """Native missingness, or a fill that is neither a constant colour nor noise."""
    name = parse_strategy(strategy).name
    return name in NATIVE or name in REMEDY_FILLS


def distribution_change(
    clean: Sequence[int] | np.ndarray, masked: Sequence[int] | np.ndarray, k: int
) -> float:
    """Total variation distance between the class shares of two prediction sets: half the summed
    absolute change, 0 when the distribution is kept, 1 when every prediction moved to other classes."""
    return float(0.5 * np.abs(class_shares(np.asarray(clean), k) - class_shares(np.asarray(masked), k)).sum())


def rank_strategies(changes: Mapping[str, float]) -> list[str]:
    """Native strategies first (in `NATIVE` order), then the rest by absolute change, smallest first;
    ties keep the given order."""
    names = list(changes)
    native = [s for s in NATIVE if s in changes]
    rest = sorted((s for s in names if s not in native), key=lambda s: (abs(changes[s]), names.index(s)))
    return native + rest


def recommend(changes: Mapping[str, float], failing: Collection[str] = ()) -> str | None:
    """The strategy to recommend: the first remedy by `rank_strategies` that is not failing; None when
    every remedy measured is failing (or none was measured)."""
    return next((s for s in rank_strategies(changes) if is_remedy(s) and s not in failing), None)
