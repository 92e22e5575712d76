"""The audit registry: one line per built-in audit, plus audits installed from elsewhere.

An audit is a package whose torch-free `__init__.py` defines `INFO` (an `AuditInfo`); its computation
(`INFO.implementation`, `module:Class`) is imported only when the audit runs, so reading the metadata
(the API, the dashboard, the light CLI) never imports torch. Extra audits register the same way from
the `occulta.audits` entry-point group (value: the package) or the `OCCULTA_EXTRA_AUDITS` environment
variable (comma-separated packages), so a plug-in reaches the CLI, the API and the workers without an
edit here. See docs/architecture.md, "Adding an audit".
"""

from __future__ import annotations

import importlib
import os
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from auditors.audits.info import AuditConfig, AuditInfo

if TYPE_CHECKING:
    from auditors.audits.base import Audit

BUILTIN = (
    "auditors.audits.missingness_bias",
    "auditors.audits.lime_consistency",
    "auditors.audits.sis",
    "auditors.audits.spurious_signal",
)
ENTRY_POINT_GROUP = "occulta.audits"
EXTRA_ENV = "OCCULTA_EXTRA_AUDITS"


class UnknownAuditError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _packages() -> list[str]:
    extra = [m.strip() for m in os.environ.get(EXTRA_ENV, "").split(",") if m.strip()]
    plugged = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return list(dict.fromkeys([*BUILTIN, *plugged, *extra]))


@cache
def _info_of(package: str) -> AuditInfo:
    info = getattr(importlib.import_module(package), "INFO", None)
    if not isinstance(info, AuditInfo):
        raise TypeError(f"audit package {package} defines no INFO: AuditInfo")
    return info


def audit_infos() -> dict[str, AuditInfo]:
    """Every registered audit's metadata by name, built-ins first in their listed order (no torch)."""
    return {info.name: info for info in map(_info_of, _packages())}


def builtin_infos() -> list[AuditInfo]:
    """The built-in audits' metadata, in `BUILTIN` order (the demo battery, the example policy)."""
    return [_info_of(package) for package in BUILTIN]


def available_audits() -> list[str]:
    return sorted(audit_infos())


def audit_info(name: str) -> AuditInfo:
    """The named audit's metadata; unknown names raise with the list of known ones."""
    infos = audit_infos()
    if name not in infos:
        raise UnknownAuditError(f"unknown audit {name!r}; available: {', '.join(sorted(infos))}")
    return infos[name]


@cache
def audit_class(name: str) -> type[Audit[Any, Any]]:
    """The named audit's class (imports its computation, and so torch)."""
    module, _, cls_name = audit_info(name).implementation.partition(":")
    cls: type[Audit[Any, Any]] = getattr(importlib.import_module(module), cls_name)
    if cls.name != name:
        raise TypeError(f"{module}:{cls_name} is named {cls.name!r}, registered as {name!r}")
    return cls


def audit_charts(name: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The named audit's chart specs for its `metrics` (torch-free; an unknown audit draws none, so an
    old report of a since-removed audit still renders)."""
    infos = audit_infos()
    if name not in infos or not infos[name].charts:
        return []
    module, _, fn_name = infos[name].charts.partition(":")
    charts: list[dict[str, Any]] = getattr(importlib.import_module(module), fn_name)(metrics)
    return charts


def get_auditor(name: str) -> Audit[Any, Any]:
    """An instance of the named audit."""
    return audit_class(name)()


def parse_config(name: str, raw: dict[str, Any] | None) -> AuditConfig:
    """Validate an audit's config dict (raises pydantic.ValidationError naming the bad key)."""
    return audit_class(name).Config.model_validate(raw or {})
