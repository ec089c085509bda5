"""Catch-up after a republish (补发后追赶): the projector skips the history its read models hold.

When the broker has lost what was published, the relay republishes the whole store, in store
order. The read models were current up to some point of that order, so what they hold is a
prefix of each partition's republished records. As it publishes, the relay measures that
prefix (`HeldPrefix`, comparing each record's (case, seq) with case_view, the same test the
projector uses to pass over a record) and records where it ends in `republished_held`. A
projector reading a batch it holds all of asks `skip_to` and seeks there: catching up then
takes as long as the events that are new, not as long as the store.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import psycopg

# Only seek when the held history goes on this far past the batch: nearer, passing over it is as cheap.
SKIP_AHEAD = 2_000
HELD_SQL = "SELECT case_id, seq FROM case_view WHERE case_id = ANY(%s)"
MARK_SQL = ('INSERT INTO republished_held (topic, partition, "offset") SELECT %s, p, o '
            "FROM unnest(%s::int[], %s::bigint[]) AS m(p, o) ON CONFLICT (topic, partition) "
            'DO UPDATE SET "offset" = greatest(republished_held."offset", EXCLUDED."offset")')
MARKS_SQL = 'SELECT partition, "offset" FROM republished_held WHERE topic = %s AND partition = ANY(%s)'
OPEN_SQL = "UPDATE relay_state SET republish_open = %s WHERE topic = %s"


async def held_seqs(conn: psycopg.AsyncConnection[Any], case_ids: Collection[str]) -> dict[str, int]:
    """case id -> the last seq the read models hold of it (absent: none)."""
    cur = await conn.execute(HELD_SQL, (list(case_ids),), prepare=True)
    return dict(await cur.fetchall())


class HeldPrefix:
    """The relay's side: where each partition's held prefix ends, as the republish goes on.

    Which partitions are still open is kept in relay_state (`republish_open`), written before
    the records after a closing one are forgotten from the outbox: a relay that takes over
    mid-republish resumes from there, and never reopens a partition whose prefix had ended.
    """

    def __init__(self, open_partitions: Iterable[int]) -> None:
        self.open = set(open_partitions)  # partitions whose republished records are all held so far
        self._stored: list[int] | None = sorted(self.open)

    def advance(self, shares: Mapping[int, Sequence[tuple[str, int]]], placed: Mapping[int, Sequence[int]],
                held: Mapping[str, int]) -> dict[int, int]:
        """The new end of each open partition's prefix, from the (case, seq) of the records just
        published there, their offsets, and what the read models hold of those cases."""
        marks: dict[int, int] = {}
        for partition, records in shares.items():
            if partition not in self.open:
                continue
            for (case_id, seq), offset in zip(records, placed[partition], strict=True):
                if seq > held.get(case_id, 0):
                    self.open.discard(partition)  # from here on the read models need every record
                    break
                marks[partition] = offset
        return marks

    async def record(self, conn: psycopg.AsyncConnection[Any], topic: str, marks: Mapping[int, int], *,
                     done: bool) -> None:
        """Store the new ends and the partitions still open (none once `done`: the republished
        history is behind us)."""
        if marks:
            await conn.execute(MARK_SQL, (topic, list(marks), list(marks.values())), prepare=True)
        still = None if done or not self.open else sorted(self.open)
        if still != self._stored:
            await conn.execute(OPEN_SQL, (still, topic))
            self._stored = still


async def skip_to(conn: psycopg.AsyncConnection[Any], topic: str,
                  fully_held: Mapping[int, int]) -> dict[int, int]:
    """The offset to seek each partition to, for the partitions whose batch was all held
    (partition -> the batch's last offset there) when the held history goes on well past it."""
    if not fully_held:
        return {}
    cur = await conn.execute(MARKS_SQL, (topic, list(fully_held)), prepare=True)
    return {p: end + 1 for p, end in await cur.fetchall() if end >= fully_held[p] + SKIP_AHEAD}
