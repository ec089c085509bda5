"""Apply suqiu/sql/*.sql in order, once each; safe to run twice and from two processes."""

from __future__ import annotations

from importlib import resources

import psycopg
import structlog

log = structlog.get_logger(__name__)
LOCK_ID = 0x5351_0001


def migrations() -> list[tuple[str, str]]:
    files = sorted((p for p in resources.files("suqiu").joinpath("sql").iterdir() if p.name.endswith(".sql")),
                   key=lambda p: p.name)
    return [(p.name, p.read_text("utf-8")) for p in files]


def migrate(dsn: str) -> list[str]:
    """Apply what is missing; returns the names applied now."""
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()
        if schema is None or schema[0] is None:
            raise RuntimeError("no current schema: create the schema named in search_path first")
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migrations():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
                log.info("migration applied", migration=name, schema=schema[0])
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (LOCK_ID,))
    return applied
