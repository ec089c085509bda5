"""Handling-time percentiles (办理时长: median and P90) of a period, exact, at any history.

The counts per (department, month, bucket) in `handling_months` say which bucket holds each
wanted rank; only the replies of those buckets are read and sorted. Partial months at the ends
of a period (and series by day) count their buckets from the replies themselves.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg

from suqiu.domain.periods import Grain, Period

FRACTIONS = (0.5, 0.9)
Key = Any  # what the figures are grouped by: None, a department, or a month's (quarter's, year's) first day
REPLY_DAY = "(replied_at AT TIME ZONE 'Asia/Shanghai')::date"
_REPLIES = ("FROM replies WHERE department = ANY(%(departments)s) AND handling_minutes IS NOT NULL "
            "AND (%(start)s::timestamptz IS NULL OR replied_at >= %(start)s) "
            "AND (%(end)s::timestamptz IS NULL OR replied_at < %(end)s)")


def whole_months(period: Period) -> tuple[Period | None, list[Period]]:
    """The whole months inside `period` (None when there are none) and the partial stretches
    left at its ends."""
    start, end = period.start, period.end
    first = start if start is None or start.day == 1 else Grain.MONTH.following(Grain.MONTH.start(start))
    last = end if end is None or end.day == 1 else Grain.MONTH.start(end)
    if first is not None and last is not None and first >= last:
        return None, [period]
    edges = [Period(a, b) for a, b in ((start, first), (last, end)) if a is not None and b is not None and a < b]
    return Period(first, last), edges


async def percentiles(conn: psycopg.AsyncConnection[Any], scopes: Sequence[tuple[Mapping[str, str], Period]],
                      key: Callable[[str], str], by_day: bool = False) -> dict[Key, tuple[float, float]]:
    """Median and P90 of the handling minutes of the replies of each scope's departments in
    its period, together, per group key.

    A scope maps each of its departments to the one whose figures its replies count in (a
    merged department's count as its successor's from the merge day): grouped by department,
    the key is that owner. `key` turns a day expression into the group key expression
    (queries._key); with `by_day` every group is smaller than a month, so every count comes
    from the replies."""
    counts: dict[Key, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for rename, period in scopes:
        departments = list(rename)
        months, edges = (None, [period]) if by_day else whole_months(period)
        if months is not None:
            cur = await conn.execute(
                f"SELECT {key('month')}, bucket, sum(replies) FROM handling_months WHERE department = ANY(%s) "
                "AND (%s::date IS NULL OR month >= %s) AND (%s::date IS NULL OR month < %s) GROUP BY 1, 2",
                (list(departments), months.start, months.start, months.end, months.end))
            for k, bucket, n in await cur.fetchall():
                counts[rename.get(k, k)][bucket] += int(n)
        for edge in edges:
            start, end = edge.instants()
            cur = await conn.execute(f"SELECT {key(REPLY_DAY)}, handling_bucket(handling_minutes), count(*) "
                                     f"{_REPLIES} GROUP BY 1, 2",
                                     {"departments": list(departments), "start": start, "end": end})
            for k, bucket, n in await cur.fetchall():
                counts[rename.get(k, k)][bucket] += int(n)
    wanted = {k: _ranks(c) for k, c in counts.items()}
    pairs = {(k, b) for k, w in wanted.items() for b, _ in w}
    values: dict[tuple[Key, int], list[float]] = defaultdict(list)
    for rename, period in scopes:
        for pair, found in (await _bucket_values(conn, list(rename), period, key, pairs, rename)).items():
            values[pair].extend(found)
    for found in values.values():
        found.sort()
    out = {}
    for k, ranks in wanted.items():
        total = sum(counts[k].values())
        picked = [_at(values.get((k, b), []), offset) for b, offset in ranks]
        out[k] = (_interpolate(picked[0], picked[1], FRACTIONS[0], total),
                  _interpolate(picked[2], picked[3], FRACTIONS[1], total))
    return out


def _ranks(buckets: dict[int, int]) -> list[tuple[int, int]]:
    """For each fraction, the (bucket, offset in bucket) of the two ranks percentile_cont reads."""
    total = sum(buckets.values())
    wanted: list[int] = []
    for fraction in FRACTIONS:
        pos = fraction * (total - 1)
        wanted.extend((math.floor(pos), math.ceil(pos)))
    out = []
    for rank in wanted:
        below = 0
        for bucket in sorted(buckets):
            if rank < below + buckets[bucket]:
                out.append((bucket, rank - below))
                break
            below += buckets[bucket]
    return out


def _at(values: list[float], offset: int) -> float:
    # The counts and the replies are written in one statement; min() only guards a hand-edited table.
    return values[min(offset, len(values) - 1)] if values else math.nan


def _interpolate(low: float, high: float, fraction: float, total: int) -> float:
    """percentile_cont's value between the two ranks around fraction × (n − 1)."""
    pos = fraction * (total - 1)
    return low + (high - low) * (pos - math.floor(pos))


async def _bucket_values(conn: psycopg.AsyncConnection[Any], departments: Sequence[str], period: Period,
                         key: Callable[[str], str], pairs: set[tuple[Key, int]],
                         rename: Mapping[str, str]) -> dict[tuple[Key, int], list[float]]:
    """The handling minutes of each wanted (group, bucket), unsorted."""
    if not pairs:
        return {}
    start, end = period.instants()
    cur = await conn.execute(
        f"SELECT {key(REPLY_DAY)}, handling_bucket(handling_minutes), handling_minutes {_REPLIES} "
        "AND handling_bucket(handling_minutes) = ANY(%(buckets)s)",
        {"departments": list(departments), "start": start, "end": end, "buckets": sorted({b for _, b in pairs})})
    out: dict[tuple[Key, int], list[float]] = defaultdict(list)
    for k, bucket, minutes in await cur.fetchall():
        pair = (rename.get(k, k), bucket)
        if pair in pairs:
            out[pair].append(minutes)
    return out
