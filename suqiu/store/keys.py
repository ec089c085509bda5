"""API keys: secrets shown once, stored as SHA-256, each mapped to system, role, department and bindings."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from suqiu.domain import DomainError, inputs
from suqiu.domain.access import Principal
from suqiu.domain.commands import SOURCE_SYSTEM_LENGTH
from suqiu.domain.model import Actor, Role
from suqiu.domain.uscc import uscc_problem

CACHE_SECONDS = 5.0  # how long a revoked key may still pass: the price of not querying per request
PREFIX_LENGTH = 12  # the public part of a key: how logs, listings and signed Kafka records name it
LABEL_LENGTH = 200  # a note for whoever lists the keys


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    principal: Principal


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_key(
    conn: psycopg.Connection[Any], system_id: str, role: Role, department: str | None = None, label: str | None = None,
    *, usccs: tuple[str, ...] = (), source_systems: tuple[str, ...] = (),
) -> str:
    """Store a new key and return its secret (the only time it is seen).

    An enterprise key is bound to the enterprises it speaks for (their USCCs, at least one); an
    intake key may be bound to its source systems.
    """
    if (role is Role.DEPARTMENT) != (department is not None):
        raise ValueError("--department: a department key needs a department, and only a department key has one")
    if (role is Role.ENTERPRISE) != bool(usccs):
        raise ValueError("--uscc: an enterprise key needs the enterprise(s) it speaks for, and only it has them")
    for code in usccs:
        if problem := uscc_problem(code):
            raise ValueError(f"--uscc {code}: {problem}")
    if source_systems and role is not Role.INTAKE:
        raise ValueError("--source-system: only an intake key is bound to source systems")
    try:
        # A binding no submission could carry would refuse every submit: the command's own rule.
        source_systems = tuple(inputs.text(s, "--source-system", SOURCE_SYSTEM_LENGTH) for s in source_systems)
        label = inputs.text(label, "--label", LABEL_LENGTH, required=False) if label is not None else None
    except DomainError as exc:
        raise ValueError(exc.message) from None
    secret = f"sq_{role.value[:4]}_{secrets.token_urlsafe(24)}"
    conn.execute(
        "INSERT INTO api_keys (key_hash, key_prefix, system_id, role, department, label, usccs, source_systems) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (digest(secret), secret[:PREFIX_LENGTH], system_id, role.value, department, label, list(usccs), list(source_systems)),
    )
    return secret


def list_keys(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every key by its prefix; never the secret (it is not stored)."""
    cur = conn.execute("SELECT key_prefix, system_id, role, department, label, created_at, revoked_at, "
                       "usccs || source_systems FROM api_keys ORDER BY created_at, key_prefix")
    names = ("prefix", "system", "role", "department", "label", "created_at", "revoked_at", "bound_to")
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def revoke_key(conn: psycopg.Connection[Any], prefix: str) -> int:
    """Revoke the live key(s) whose prefix is `prefix`; resolvers forget it within CACHE_SECONDS."""
    cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_prefix = %s AND revoked_at IS NULL",
                       (prefix,))
    return cur.rowcount


class KeyResolver:
    """Looks up bearer secrets with a short cache."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._cache: dict[tuple[str, Any], tuple[float, list[tuple[bytes, KeyInfo]]]] = {}

    async def resolve(self, secret: str) -> KeyInfo | None:
        """The live key whose secret this is (a bearer key over HTTP)."""
        found = await self._live("key_hash", digest(secret))
        return found[0][1] if found else None

    async def by_hash(self, key_hash: bytes) -> KeyInfo | None:
        """The live key with this hash (a board session holds the hash, never the secret)."""
        found = await self._live("key_hash", key_hash)
        return found[0][1] if found else None

    async def by_prefix(self, prefix: str) -> list[tuple[bytes, Principal]]:
        """The live keys named `prefix`, with their hashes (to check a signed Kafka record)."""
        return [(key_hash, info.principal) for key_hash, info in await self._live("key_prefix", prefix)]

    async def _live(self, column: str, value: Any) -> list[tuple[bytes, KeyInfo]]:
        """Live keys by `column` (key_hash or key_prefix), cached for CACHE_SECONDS."""
        hit = self._cache.get((column, value))
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self._pool.connection() as conn:
            cur = await conn.execute(_LIVE_BY[column], (value,))
            rows = await cur.fetchall()
        found = [(bytes(r[0]), KeyInfo(r[1], Principal(Actor(r[2], Role(r[3]), r[4]), frozenset(r[5]), frozenset(r[6]))))
                 for r in rows]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(column, value)] = (now, found)
        return found


_LIVE_BY = {column: "SELECT key_hash, key_prefix, system_id, role, department, usccs, source_systems FROM api_keys "
                    f"WHERE {column} = %s AND revoked_at IS NULL" for column in ("key_hash", "key_prefix")}
