"""Algorithms the audits share: LIME fitting, BackSelect, saliency, per-image deterministic randomness."""
