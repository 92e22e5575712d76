"""A suspected region: the one type the API, the CLI, the dashboard, the runner and the audits share.

A region is a box [x, y, w, h] in model-input pixels, or in fractions of the image when every value
is <= 1, with an optional artifact image (the mark suspected to be stamped there) carried inline as
PNG bytes (base64 in JSON), never as a path, so a caller cannot make a worker open a file of its
choosing. `Region` validates what it can alone (shape, sign, the PNG); `pixel_box` checks it against
a model's input size, so the API refuses a box that does not fit with a 422 before any job runs.
Pydantic and Pillow only: no torch, so the API and the light CLI import it.
"""

from __future__ import annotations

import io

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, field_validator

MAX_ARTIFACT_BYTES = 256 * 1024  # a mark stamped on an image; anything larger is not a mark
MAX_ARTIFACT_SIDE = 1024

PixelBox = tuple[int, int, int, int]


class Region(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    box: list[float] = Field(
        min_length=4,
        max_length=4,
        description="[x, y, w, h] in model-input pixels, or fractions of the image when every value <= 1",
    )
    artifact: Base64Bytes | None = Field(
        default=None,
        description=f"the suspected mark as a base64 PNG (at most {MAX_ARTIFACT_BYTES // 1024} KiB), "
        "stamped on other images for the counterfactual test",
    )
    image_index: int | None = Field(default=None, ge=0, description="only this image; null: every image")

    @field_validator("box")
    @classmethod
    def _positive_size(cls, v: list[float]) -> list[float]:
        if v[2] <= 0 or v[3] <= 0 or v[0] < 0 or v[1] < 0:
            raise ValueError("box needs x, y >= 0 and w, h > 0")
        return v

    @field_validator("artifact")
    @classmethod
    def _is_a_small_png(cls, v: bytes | None) -> bytes | None:
        if v is None:
            return v
        if len(v) > MAX_ARTIFACT_BYTES:
            raise ValueError(f"artifact is {len(v)} bytes; at most {MAX_ARTIFACT_BYTES} are accepted")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(v)) as im:
                if im.format != "PNG":
                    raise ValueError(f"artifact must be a PNG, not {im.format}")
                if max(im.size) > MAX_ARTIFACT_SIDE:
                    raise ValueError(
                        f"artifact is {im.size[0]}x{im.size[1]}; at most {MAX_ARTIFACT_SIDE} a side"
                    )
                im.verify()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ValueError(f"artifact is not a readable PNG: {exc}") from None
        return v

    @property
    def is_fraction(self) -> bool:
        """Every value <= 1: the box is in fractions of the image (the one place this rule lives)."""
        return all(v <= 1 for v in self.box)

    def pixel_box(self, height: int, width: int) -> PixelBox:
        """The box in pixels of a `height` x `width` input (fractions scaled, rounded); raises
        ValueError when it does not fit, rather than silently clipping it to something else."""
        x, y, w, h = self.box
        if self.is_fraction:
            x, y, w, h = x * width, y * height, w * width, h * height
        xi, yi, wi, hi = round(x), round(y), round(w), round(h)
        if wi <= 0 or hi <= 0 or xi + wi > width or yi + hi > height:
            raise ValueError(
                f"region {self.name!r}: box {self.box} does not fit the {width}x{height} model input"
            )
        return xi, yi, wi, hi


def parse_box_spec(spec: str, default_name: str) -> Region:
    """`name: x, y, w, h` or `x, y, w, h` (commas or spaces) as typed in the CLI or the dashboard."""
    name, _, box = spec.rpartition(":")
    try:
        values = [float(v) for v in box.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"{spec!r}: write `x, y, w, h` or `name: x, y, w, h` (pixels, or fractions)")
    return Region(name=name.strip() or default_name, box=values)
