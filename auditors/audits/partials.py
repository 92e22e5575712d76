"""Arrays inside a shard's partial: a partial is JSON (it is stored in the database and merged where
no model or image is loaded), so what a merge must draw travels as base64 of compressed `.npz` bytes:
exact, small, and plain text. Shared by every shardable audit."""

from __future__ import annotations

import base64
import io

import numpy as np


def pack_arrays(arrays: dict[str, np.ndarray]) -> str:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack_arrays(text: str) -> dict[str, np.ndarray]:
    """The arrays `pack_arrays` wrote; never unpickles (a partial is data, not code)."""
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
