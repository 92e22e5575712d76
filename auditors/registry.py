"""The auditor registry: audits plug in by name (`@register_auditor("missingness_bias")`).

Built-in audits live one per module in this package and are imported on first use, so asking for
one audit does not import the others (nor their optional dependencies).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from auditors.report import AuditResult

BUILTIN = ("missingness_bias", "lime_consistency", "sis", "spurious_signal")


class AuditConfig(BaseModel):
    """Base of every audit's config: pure data, so it travels over JSON to a worker."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = None  # None: the run's seed


class Auditor(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[AuditConfig]]

    def run(self, ctx: Any, config: Any) -> AuditResult: ...


class UnknownAuditError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


_REGISTRY: dict[str, type[Any]] = {}
A = TypeVar("A")


def register_auditor(name: str) -> Callable[[type[A]], type[A]]:
    def deco(cls: type[A]) -> type[A]:
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return deco


def available_audits() -> list[str]:
    return sorted(set(BUILTIN) | set(_REGISTRY))


def get_auditor(name: str) -> Auditor:
    """An instance of the named auditor; unknown names raise with the list of known ones."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(f"auditors.{name}")
    if name not in _REGISTRY:
        raise UnknownAuditError(f"unknown audit {name!r}; available: {', '.join(available_audits())}")
    instance: Auditor = _REGISTRY[name]()
    return instance


def parse_config(name: str, raw: dict[str, Any] | None) -> AuditConfig:
    """Validate an audit's config dict (raises pydantic.ValidationError naming the bad key)."""
    auditor = get_auditor(name)
    return auditor.Config.model_validate(raw or {})
