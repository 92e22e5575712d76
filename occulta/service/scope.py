"""Tenant scoping in one place: a row of another tenant is indistinguishable from a missing one."""

from __future__ import annotations

from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from occulta.errors import NotFoundError


class Owned(Protocol):
    tenant_id: str


T = TypeVar("T", bound=Owned)


def get_owned(session: Session, cls: type[T], obj_id: str, *, tenant_id: str, what: str) -> T:
    row = session.get(cls, obj_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFoundError(f"{what} {obj_id} not found")
    return row
