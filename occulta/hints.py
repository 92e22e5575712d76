"""Did-you-mean hints for names a user types: card keys, audit config keys, architecture names.

One place for the rule, so every "unknown X" error offers the nearest valid spelling the same way
(the gate's policy errors already do).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError


def did_you_mean(word: str, options: Iterable[str], cutoff: float = 0.75) -> str:
    """` (did you mean X?)` for the closest option, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def field_names(model: type[BaseModel]) -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        names.append(name)
        if isinstance(info.alias, str):
            names.append(info.alias)
    return names


def validation_parts(exc: ValidationError, model: type[BaseModel], default_loc: str = "") -> list[str]:
    """`loc: message` for each error; an unknown key says which known key it is closest to."""
    known = field_names(model)
    parts = []
    for error in exc.errors():
        loc = ".".join(str(x) for x in error["loc"]) or default_loc
        if error["type"] == "extra_forbidden":
            key = str(error["loc"][-1]) if error["loc"] else ""
            parts.append(f"unknown key `{loc}`{did_you_mean(key, known)}")
        else:
            parts.append(f"{loc}: {error['msg'].removeprefix('Value error, ')}")
    return parts
