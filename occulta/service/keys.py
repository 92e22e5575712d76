"""API keys: `occ_` + 32 random bytes, stored only as SHA-256 (a leaked table reveals no key), shown
once at creation; the first characters are kept so a person can tell keys apart."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from occulta.db import ApiKey, Tenant, new_id, utcnow
from occulta.errors import NotFoundError

KEY_PREFIX = "occ_"
SHOWN_CHARS = 12


@dataclass(frozen=True)
class NewKey:
    id: str
    tenant_id: str
    name: str
    prefix: str
    key: str  # the secret; returned once, never stored


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()
    if tenant is None:
        tenant = Tenant(id=new_id("tnt"), name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, *, tenant_id: str, name: str = "") -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"), tenant_id=tenant_id, name=name, prefix=key[:SHOWN_CHARS], key_hash=hash_key(key)
    )
    session.add(row)
    session.commit()
    return NewKey(id=row.id, tenant_id=tenant_id, name=name, prefix=row.prefix, key=key)


def create_tenant_key(session: Session, *, tenant: str, name: str = "") -> NewKey:
    """For `occulta admin create-key --tenant NAME` and `occulta serve`: the tenant is made if new."""
    tenant_row = ensure_tenant(session, tenant)
    return create_key(session, tenant_id=tenant_row.id, name=name)


def find_active_key(session: Session, key: str) -> ApiKey | None:
    """The active key row a presented secret matches, or None (unknown, revoked, or not `occ_...`)."""
    if not key.startswith(KEY_PREFIX):
        return None
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).one_or_none()


def authenticate(session: Session, key: str) -> str | None:
    """The tenant id a presented key belongs to, or None (unknown, revoked, or not an `occ_` key)."""
    row = find_active_key(session, key)
    return row.tenant_id if row is not None else None


def is_active(session: Session, *, key_id: str, tenant_id: str) -> bool:
    """Whether a key (by id, as a dashboard session holds it) still exists unrevoked for its tenant."""
    row = session.get(ApiKey, key_id)
    return row is not None and row.revoked_at is None and row.tenant_id == tenant_id


def list_keys(session: Session, *, tenant_id: str) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)).all()
    )


def revoke_key(session: Session, *, tenant_id: str, key_id: str) -> None:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFoundError(f"API key {key_id} not found")


def has_any_key(session: Session) -> bool:
    return session.scalars(select(ApiKey.id).limit(1)).first() is not None
