"""Board sessions in PostgreSQL: the browser's cookie holds a random token, never the API key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from suqiu.store.keys import digest

LIFETIME = timedelta(hours=8)  # one working day


@dataclass(frozen=True, slots=True)
class Session:
    key_hash: bytes
    csrf: str


class Sessions:
    """Create, find and end board sessions; an expired one is as good as absent."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def create(self, key_hash: bytes, now: datetime) -> tuple[str, Session]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM board_sessions WHERE expires_at <= %s", (now,))
            await conn.execute("INSERT INTO board_sessions (token_hash, key_hash, csrf, created_at, expires_at) "
                               "VALUES (%s, %s, %s, %s, %s)", (digest(token), key_hash, csrf, now, now + LIFETIME))
        return token, Session(key_hash, csrf)

    async def find(self, token: str, now: datetime) -> Session | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT key_hash, csrf FROM board_sessions WHERE token_hash = %s "
                                     "AND expires_at > %s", (digest(token), now))
            row = await cur.fetchone()
        return Session(bytes(row[0]), row[1]) if row else None

    async def end(self, token: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM board_sessions WHERE token_hash = %s", (digest(token),))
