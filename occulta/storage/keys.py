"""Object keys: built by the server from ids, never from user file names, and validated wherever a
path comes from outside (an artifact path in a URL). Validation decodes first, then refuses `..`,
absolute paths and odd separators, the way MLflow validates artifact paths."""

from __future__ import annotations

import re
from urllib.parse import unquote

from occulta.errors import OccultaError

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidKeyError(OccultaError):
    code = "invalid_path"


def validate_relative_path(path: str) -> str:
    """A clean relative `a/b/c.png`, or InvalidKeyError. Decodes %-escapes until stable so `%2e%2e`
    and double encoding cannot smuggle a `..` past the check."""
    decoded = path
    for _ in range(5):
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        decoded = nxt
    else:
        raise InvalidKeyError(f"path {path!r} is encoded too many times")
    if not decoded or _CONTROL.search(decoded):
        raise InvalidKeyError("empty path or control characters in path")
    if "\\" in decoded or decoded.startswith("/") or _DRIVE.match(decoded):
        raise InvalidKeyError(f"path {path!r} must be relative and use '/' separators")
    parts = decoded.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKeyError(f"path {path!r} contains an empty, '.' or '..' segment")
    return decoded


def join_key(*parts: str) -> str:
    """Join server-made segments; each is validated so a bug cannot build an escaping key either."""
    return "/".join(validate_relative_path(p.strip("/")) for p in parts if p.strip("/"))


def tenant_prefix(tenant_id: str) -> str:
    return join_key("tenants", tenant_id) + "/"


def model_prefix(tenant_id: str, model_id: str) -> str:
    return join_key("tenants", tenant_id, "models", model_id) + "/"


def dataset_prefix(tenant_id: str, dataset_id: str) -> str:
    return join_key("tenants", tenant_id, "datasets", dataset_id) + "/"


def audit_prefix(tenant_id: str, job_id: str) -> str:
    return join_key("tenants", tenant_id, "audits", job_id) + "/"
