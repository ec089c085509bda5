"""SQL that finds the rows of a batch of keys with one index probe per key.

Until autovacuum analyses a table that has grown (a bulk import, a backlog after a broker
loss, a busy projector), PostgreSQL plans `key = ANY(array)` as a scan of the whole table,
several times slower than probes (BENCHMARKS.md). A LATERAL subquery behind OFFSET 0 cannot be flattened into a join, so it stays one
probe per key whatever the statistics say.
"""

from __future__ import annotations


def probe(table: str, key: str, columns: str, *, key_type: str = "text", lock: bool = False) -> str:
    """A FROM clause: the keys of parameter %s as `k.<key>`, each with its rows of `table` as `r`."""
    return (f"unnest(%s::{key_type}[]) AS k({key}) CROSS JOIN LATERAL (SELECT {columns} FROM {table} "
            f"WHERE {table}.{key} = k.{key} OFFSET 0{' FOR UPDATE' if lock else ''}) AS r")


def delete_by(table: str, key: str, *, key_type: str = "text") -> str:
    """DELETE of the rows of `table` whose `key` is in parameter %s (found by probes, removed by ctid)."""
    return f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT r.ctid FROM {probe(table, key, 'ctid', key_type=key_type)}))"
