"""Roles and API tokens. Tokens are 256-bit random secrets; only their SHA-256 is stored.

A plain hash is enough here (no salt or slow KDF): the secret is random, not a human password,
so a leaked hash cannot be brute-forced.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lightfence.verifier import audit
from lightfence.verifier.models import ApiTokenRow

TOKEN_PREFIX = "lft_"


class Role(StrEnum):
    ADMIN = "admin"
    """Everything: landmarks, devices, tokens, flags."""
    OPERATOR = "operator"
    """Sees and enrols only its own devices (owner = operator name); submits their records."""
    AUDITOR = "auditor"
    """Reads everything, writes nothing."""
    LANDMARK = "landmark"
    """Submits records signed by its own key (owner = landmark id) and its peer RTTs."""


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: from a token, or the local CLI / background worker."""

    name: str
    role: Role
    owner: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.name}"

    @property
    def can_write(self) -> bool:
        return self.role is not Role.AUDITOR

    def sees_device(self, operator: str) -> bool:
        if self.role is Role.OPERATOR:
            return operator == self.owner
        return self.role in (Role.ADMIN, Role.AUDITOR)


SYSTEM = Principal(name="system", role=Role.ADMIN)
"""The verifier itself (background recomputation, check-in sweeps)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, *, name: str, role: Role, owner: str | None, actor: str, now_ns: int
) -> str:
    """Store a new token and return its secret (shown once; only the hash is kept)."""
    if not name.strip():
        raise TokenError("a token needs a name")
    if role in (Role.OPERATOR, Role.LANDMARK) and not owner:
        what = "operator name" if role is Role.OPERATOR else "landmark id"
        raise TokenError(f"a {role.value} token needs --owner (its {what})")
    if role in (Role.ADMIN, Role.AUDITOR) and owner:
        raise TokenError(f"an {role.value} token has no owner")
    if session.execute(select(ApiTokenRow.id).where(ApiTokenRow.name == name)).first():
        raise TokenError(f"a token named {name!r} exists; pick another name or revoke it first")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiTokenRow(
            name=name,
            role=role.value,
            owner=owner,
            token_hash=hash_token(secret),
            created_ns=now_ns,
        )
    )
    audit.append(
        session,
        actor=actor,
        action="token.create",
        subject=name,
        payload={"role": role.value, "owner": owner},
        now_ns=now_ns,
    )
    try:
        session.flush()
    except IntegrityError:
        raise TokenError(f"a token named {name!r} exists") from None
    return secret


def revoke_token(session: Session, *, name: str, actor: str, now_ns: int) -> None:
    row = session.execute(select(ApiTokenRow).where(ApiTokenRow.name == name)).scalar_one_or_none()
    if row is None:
        raise TokenError(f"no token named {name!r}")
    if row.revoked_ns is not None:
        raise TokenError(f"token {name!r} is already revoked")
    row.revoked_ns = now_ns
    audit.append(
        session, actor=actor, action="token.revoke", subject=name, payload={}, now_ns=now_ns
    )


def authenticate(session: Session, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.execute(
        select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_ns is not None:
        return None
    return Principal(name=row.name, role=Role(row.role), owner=row.owner)
