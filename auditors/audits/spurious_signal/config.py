"""The spurious-signal audit's settings: pure data (pydantic, no torch), so validating a battery never
imports the computation."""

from __future__ import annotations

from pydantic import Field, field_validator

from auditors.audits.info import AuditConfig
from auditors.methods.catalog import SALIENCY_METHODS
from auditors.regions import Region


class SpuriousConfig(AuditConfig):
    regions: list[Region] = Field(default_factory=list)
    methods: list[str] = Field(
        default_factory=lambda: ["gradient_squared", "smoothgrad", "integrated_gradients"]
    )
    q: float = Field(default=0.005, gt=0, le=1)
    n_images: int = Field(default=256, ge=2)
    n_samples: int = Field(default=16, ge=1, description="SmoothGrad noisy copies")
    noise: float = Field(default=0.15, ge=0, description="SmoothGrad sigma, share of the [0,1] range")
    steps: int = Field(default=32, ge=2, description="integrated-gradients steps")
    patch_size: int | None = Field(
        default=None, description="occlusion box / discovery stride; None: the model's"
    )
    strategy: str | None = Field(
        default=None, description="removal strategy; None: least-biased native/blur/mean"
    )
    discovery: bool = True
    global_test: bool = Field(
        default=True, description="test each class's colour cast (a non-local shortcut)"
    )
    moving_test: bool = Field(
        default=True,
        description="search for marks that move from image to image (a tag in another corner of each)",
    )
    lowlevel_test: bool = Field(
        default=True,
        description="test each class's detail (blur) and JPEG blockiness, each relative to contrast: "
        "source and scanner shortcuts",
    )
    max_lowlevel_tests: int = Field(default=6, ge=1, description="class statistics tested on the model")
    pattern_test: bool = Field(
        default=True,
        description="test each class for a faint pattern its images share anywhere in the image (a blended "
        "pattern, a sinusoid, a semi-transparent watermark)",
    )
    max_pattern_tests: int = Field(default=2, ge=1, description="class patterns tested on the model")
    located_test: bool = Field(
        default=True,
        description="test the place each class's input gradients single out, by moving the class's pixels "
        "there onto other images (a mark whose colour changes from image to image)",
    )
    max_located_tests: int = Field(default=2, ge=1, description="located class boxes tested on the model")
    max_candidates: int = Field(default=8, ge=1)
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="family-wise error level of the content null and the stamp tests",
    )
    min_flip: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="the smallest excess of stamp flips over the null a reported shortcut must cause",
    )
    n_permutations: int = Field(default=50, ge=19, description="label permutations behind the content null")
    max_recipients: int = Field(default=128, ge=8, description="other-class images each stamp test uses")
    share_threshold: float = 0.5
    enrichment_threshold: float = 10.0
    min_group: int = Field(default=8, ge=2)
    n_random_boxes: int = Field(default=8, ge=1)
    n_overlays: int = Field(default=8, ge=0)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in SALIENCY_METHODS]
        if bad:
            raise ValueError(f"unknown saliency method(s) {bad}; available: {', '.join(SALIENCY_METHODS)}")
        return v
