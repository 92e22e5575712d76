"""The method names a config may use, torch-free: a config validates against these without importing
the computation (so validating a battery never imports torch). The modules that implement them check
they agree (`saliency.METHODS` is this tuple)."""

from __future__ import annotations

SALIENCY_METHODS = ("gradient", "gradient_squared", "smoothgrad", "integrated_gradients", "occlusion")
