"""The method names a config may use, torch-free: a config validates against these without importing
the computation (so validating a battery never imports torch). The modules that implement them check
they agree (`saliency.METHODS` is this tuple)."""

from __future__ import annotations

from typing import Literal

SALIENCY_METHODS = ("gradient", "gradient_squared", "smoothgrad", "integrated_gradients", "occlusion")
# Where a config asks for "several fill colours" and names none (LIME's fill consistency).
DEFAULT_COLORS = ("color:255,0,0", "color:0,255,0", "color:0,0,255", "color:255,255,0")
# What a LIME feature is: a patch of a grid, or a superpixel.
FeatureKind = Literal["grid", "slic", "quickshift"]
