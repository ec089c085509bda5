"""Drop every read model and rebuild it from the store.

The new read models are built beside the live ones: workers (processes when there is enough
to do) each fold a share of the cases, read from one exported snapshot, and COPY the rows into
bare copies of the tables; the indexes are then built on them in parallel, by sorting. One
short transaction swaps the new tables in by name and applies, through the live projector,
whatever was stored after the snapshot; live projectors wait on its locks and carry on.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import errors, sql

from suqiu.base.policy import load_policy
from suqiu.base.processes import log_level, set_up_child, settle_gc
from suqiu.domain.sla import CalendarError
from suqiu.projections import rows
from suqiu.projections.histories import Rows, project_history
from suqiu.projections.projector import CASE_COLUMNS, TIMELINE_COLUMNS, TIMER_COLUMNS, Incoming, Projector
from suqiu.schemas.codec import Codec
from suqiu.store.binary import CONVERT, COPY_AS
from suqiu.streams.topics import partition_for

log = structlog.get_logger(__name__)
# quarantined_cases is emptied too: a rebuild folds every case again, so none stays held back.
READ_MODELS = ("case_view", "case_timeline", "sla_timers", "assignments", "closures", "replies", "department_days",
               "handling_months", "projection_offsets", "quarantined_cases")
# The tables rebuilt beside the live ones, with the columns a worker copies into them.
REBUILT: dict[str, tuple[tuple[str, str], ...]] = {
    "case_view": CASE_COLUMNS, "case_timeline": TIMELINE_COLUMNS, "sla_timers": TIMER_COLUMNS,
    "assignments": rows.ASSIGNMENT_COLUMNS, "closures": rows.CLOSURE_COLUMNS, "replies": rows.REPLY_COLUMNS,
    "department_days": rows.DAY_COLUMNS, "handling_months": (),  # summed from the replies, not copied
}
LOCK_ID = 0x5351_0003
FLUSH_ROWS = 20_000  # timeline rows a worker holds before it copies them out
PROGRESS_EVERY = 5_000


class RebuildError(Exception):
    """A rebuild could not run (another is running) or a worker failed; nothing was swapped in."""


@dataclass(frozen=True, slots=True)
class Share:
    """What one worker folds: the cases whose hash falls in its share, as of `snapshot`."""

    dsn: str
    snapshot: str
    index: int
    count: int
    policy_path: str | None
    now: datetime
    partitions: int


async def rebuild(dsn: str, policy_path: str | None, now: Callable[[], datetime], topic: str, partitions: int, *,
                  workers: int = 1, progress: Callable[[int], None] | None = None) -> int:
    """Returns the number of events folded into the read models."""
    try:
        return await _rebuild(dsn, policy_path, now(), topic, partitions, workers, progress)
    except CalendarError as exc:  # the policy given to the rebuild lacks a year the store needs
        raise RebuildError(f"the SLA policy's calendar cannot place a deadline: {exc.message}") from None


async def _rebuild(dsn: str, policy_path: str | None, at: datetime, topic: str, partitions: int, workers: int,
                   progress: Callable[[int], None] | None) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (LOCK_ID,))
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            raise RebuildError("another rebuild is running on this schema")
        try:
            await _create_next(conn)
            async with await psycopg.AsyncConnection.connect(dsn) as snap:
                # The snapshot every worker reads, and the relay heads that match it.
                await snap.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
                cur = await snap.execute("SELECT pg_export_snapshot()")
                snapshot = (await cur.fetchone() or ("",))[0]
                cur = await snap.execute('SELECT partition, "offset" FROM relay_offsets WHERE topic = %s', (topic,))
                heads = await cur.fetchall()
                shares = [Share(dsn, snapshot, i, workers, policy_path, at, partitions) for i in range(workers)]
                started = time.perf_counter()
                folded = await asyncio.to_thread(_fold_all, shares, progress)
                log.info("rebuild folded the snapshot", events=folded, workers=workers,
                         seconds=round(time.perf_counter() - started, 2))
            await _sum_days(conn)
            started = time.perf_counter()
            renames = await _index_next(conn, dsn, workers)
            log.info("rebuild indexed the new tables", seconds=round(time.perf_counter() - started, 2))
            started = time.perf_counter()
            late = await _swap(conn, renames, policy_path, at, topic, partitions, heads)
            log.info("rebuild swapped in", late_events=late, seconds=round(time.perf_counter() - started, 2))
            return folded + late
        finally:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(sql.Identifier(_next(t)) for t in REBUILT)))
            await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (LOCK_ID,))


async def _sum_days(conn: psycopg.AsyncConnection[Any]) -> None:
    """The workers copied each case's daily tallies; one row per (department, day) holds their sum.
    The handling-time buckets are counted from the replies."""
    table = sql.Identifier(_next("department_days"))
    sums = sql.SQL(", ").join(sql.SQL("sum({0}) AS {0}").format(sql.Identifier(n)) for n in rows.DAY_COUNTS)
    async with conn.transaction():
        await conn.execute(sql.SQL("CREATE TEMP TABLE summed_days ON COMMIT DROP AS SELECT department, day, {} "
                                   "FROM {} GROUP BY department, day").format(sums, table))
        await conn.execute(sql.SQL("TRUNCATE {}").format(table))
        await conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM summed_days").format(table))
        await conn.execute(sql.SQL("INSERT INTO {} (department, month, bucket, replies) SELECT {}, count(*) FROM {} "
                                   "WHERE handling_minutes IS NOT NULL GROUP BY 1, 2, 3").format(
            sql.Identifier(_next("handling_months")), sql.SQL(rows.HANDLING_MONTH_KEY),
            sql.Identifier(_next("replies"))))


def _next(name: str) -> str:
    """The name a new table or index has until the swap."""
    return f"rebuild_{name}"


async def _create_next(conn: psycopg.AsyncConnection[Any]) -> None:
    """Copies of the read-model tables without their rows and, for now, without indexes.

    Everything an operator may have set on a table comes along: column defaults, checks,
    storage and statistics settings and comments (LIKE), storage parameters such as
    autovacuum settings, and the table's comment (grants follow at the swap).
    """
    for table in REBUILT:
        new = sql.Identifier(_next(table))
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
        await conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)").format(
            new, sql.Identifier(table)))
        cur = await conn.execute("SELECT reloptions, obj_description(oid, 'pg_class') FROM pg_class "
                                 "WHERE oid = %s::regclass", (table,))
        options, comment = await cur.fetchone() or (None, None)
        if options:
            await conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(
                new, sql.SQL(", ").join(sql.SQL(o) for o in options)))  # name=value, as the catalogue holds them
        if comment is not None:
            await conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(comment)))


LIVE_INDEXES = """
SELECT t.relname, i.relname, x.indisunique, coalesce(con.contype, ''), pg_get_indexdef(i.oid)
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = t.oid
 WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s)
 ORDER BY t.relname, i.relname
"""


async def _index_next(conn: psycopg.AsyncConnection[Any], dsn: str, parallel: int) -> list[tuple[str, str]]:
    """Give the new tables the live tables' indexes and constraints, then statistics.

    Building an index over loaded rows sorts once, far cheaper than keeping it up to date row
    by row; tables are built `parallel` at a time. Returns (new name, live name) per index.
    """
    cur = await conn.execute(LIVE_INDEXES, (list(REBUILT),))
    work: dict[str, list[sql.Composed]] = {t: [] for t in REBUILT}
    names: list[tuple[str, str]] = []
    for table, index, unique, constraint, definition in await cur.fetchall():
        if constraint not in ("", "p", "u"):
            raise RebuildError(f"{table}: index {index} backs a constraint of kind {constraint!r}, "
                               "which rebuild cannot recreate")
        new = _next(f"index_{len(names)}")  # a live name may already use all 63 characters
        method = definition.split(" USING ", 1)[1]  # pg_get_indexdef: CREATE ... ON table USING method (...)
        work[table].append(sql.SQL("CREATE {}INDEX {} ON {} USING {}").format(
            sql.SQL("UNIQUE " if unique else ""), sql.Identifier(new), sql.Identifier(_next(table)),
            sql.SQL(method)))  # text PostgreSQL itself generated
        if constraint:
            work[table].append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                sql.Identifier(_next(table)), sql.Identifier(new),
                sql.SQL("PRIMARY KEY" if constraint == "p" else "UNIQUE"), sql.Identifier(new)))
        names.append((new, index))
    sizes = {}
    for table in REBUILT:
        work[table].append(sql.SQL("ANALYZE {}").format(sql.Identifier(_next(table))))
        cur = await conn.execute("SELECT pg_relation_size(%s::regclass)", (_next(table),))
        sizes[table] = (await cur.fetchone() or (0,))[0]
    # Biggest first, so the longest build starts at once (the timeline has a row per event).
    queue_ = sorted(REBUILT, key=lambda t: -sizes[t])

    async def builder() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
            await c.execute("SET maintenance_work_mem = '256MB'")
            while queue_:
                for statement in work[queue_.pop(0)]:
                    await c.execute(statement)

    await asyncio.gather(*(builder() for _ in range(max(1, min(parallel, len(queue_))))))
    return names


TABLE_GRANTS = """
SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.oid = %s::regclass AND a.grantee <> c.relowner
"""


async def _swap(conn: psycopg.AsyncConnection[Any], indexes: list[tuple[str, str]], policy_path: str | None, at: datetime,
                topic: str, partitions: int, heads: list[tuple[int, int]]) -> int:
    """The new tables in place of the live ones, then what was stored after the snapshot: one transaction.

    A view or foreign key someone hung on a read model makes the DROP fail: the rebuild then
    stops with nothing changed. Grants on the live tables carry over.
    """
    async with conn.transaction():
        await conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in REBUILT)))
        for table in REBUILT:
            cur = await conn.execute(TABLE_GRANTS, (table,))
            grants = await cur.fetchall()
            try:
                await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
            except errors.DependentObjectsStillExist as exc:
                raise RebuildError(f"{table} cannot be replaced: {exc.diag.message_detail or exc}") from None
            await conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(_next(table)), sql.Identifier(table)))
            for privilege, grantee in grants:
                await conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(
                    sql.SQL(privilege), sql.Identifier(table),  # privilege names from the catalog
                    sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)))
        for new, live in indexes:  # renaming a constraint's index renames the constraint
            await conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(new), sql.Identifier(live)))
        await conn.execute(f"TRUNCATE {', '.join(t for t in READ_MODELS if t not in REBUILT)}")
        policy = load_policy(policy_path)
        projector = Projector(Codec(), lambda: policy, lambda: at)
        async with conn.cursor() as cur:
            await cur.executemany(
                'INSERT INTO projection_offsets (projection, topic, partition, "offset", applied, updated_at) '
                "VALUES (%s, %s, %s, %s, 0, %s)", [(projector.name, topic, p, o, at) for p, o in heads])
        # Stored after the snapshot (or committed late): newer than what the new views reflect.
        cur = await conn.execute(
            "SELECT e.case_id, e.data FROM events e LEFT JOIN case_view v USING (case_id) "
            "WHERE e.seq > coalesce(v.seq, 0) ORDER BY e.position")
        late = [Incoming(topic, partition_for(case_id, partitions), 0, projector.codec.decode_event(bytes(data)))
                for case_id, data in await cur.fetchall()]
        return await projector.apply_in(conn, late, checkpoint=False) if late else 0


def _fold_all(shares: list[Share], progress: Callable[[int], None] | None) -> int:
    """Run the shares: inline for one, else a process each; progress as they report it."""
    tick = progress or (lambda n: None)
    if len(shares) == 1:
        return fold_share(shares[0], tick)
    ctx = multiprocessing.get_context("spawn")  # the caller has a running event loop and connections
    reports: multiprocessing.Queue[tuple[str, int, Any]] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(share, reports, log_level()), daemon=True) for share in shares]
    for p in procs:
        p.start()
    total, done = 0, 0
    try:
        while done < len(procs):
            try:
                kind, index, value = reports.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RebuildError(f"a rebuild worker died (exit code {dead[0].exitcode})") from None
                continue
            if kind == "progress":
                tick(value)
            elif kind == "done":
                total, done = total + value, done + 1
            elif kind == "refused":
                raise value
            else:
                raise RebuildError(f"rebuild worker {index} failed:\n{value}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    return total


def _worker(share: Share, reports: multiprocessing.Queue[tuple[str, int, Any]], level: str) -> None:
    set_up_child(level)
    settle_gc()
    try:
        reports.put(("done", share.index, fold_share(share, lambda n: reports.put(("progress", share.index, n)))))
    except CalendarError as exc:  # a configuration fault: rebuild() says so in its own words
        reports.put(("refused", share.index, exc))
    except Exception:  # reported to the coordinator, which fails the rebuild with it
        reports.put(("error", share.index, traceback.format_exc()))


def fold_share(share: Share, progress: Callable[[int], None]) -> int:
    """Fold this share's cases into the staging tables; returns how many events it folded."""
    codec, policy = Codec(), load_policy(share.policy_path)
    out, folded, reported = Rows(), 0, 0
    with psycopg.connect(share.dsn) as read, psycopg.connect(share.dsn) as write:
        read.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        read.read_only = True
        read.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(share.snapshot)))
        partition_of = functools.partial(partition_for, partitions=share.partitions)
        for _, stored in itertools.groupby(_events(read, share), key=lambda r: r[0]):
            folded += project_history((codec.decode_event(data) for _, data in stored), policy, share.now,
                                      partition_of, out)
            if len(out) >= FLUSH_ROWS:
                _copy(write, out)
                out = Rows()
            if folded - reported >= PROGRESS_EVERY:
                progress(folded - reported)
                reported = folded
        _copy(write, out)
        write.commit()
    progress(folded - reported)
    return folded


def _events(conn: psycopg.Connection[Any], share: Share) -> Iterator[tuple[str, bytes]]:
    """The share's events in (case_id, seq) order, streamed."""
    where: sql.Composable = sql.SQL("")
    if share.count > 1:
        where = sql.SQL("WHERE (hashtext(case_id) & 2147483647) % {} = {}").format(
            sql.Literal(share.count), sql.Literal(share.index))
    query = sql.SQL("COPY (SELECT case_id, data FROM events {} ORDER BY case_id, seq) TO STDOUT (FORMAT BINARY)")
    with conn.cursor() as cur, cur.copy(query.format(where)) as copy:
        copy.set_types(["text", "bytea"])
        yield from copy.rows()


def _copy(conn: psycopg.Connection[Any], out: Rows) -> None:
    with conn.cursor() as cur:
        for table, batch in out.tables().items():
            if not batch:
                continue
            columns = REBUILT[table]
            query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(_next(table)), sql.SQL(", ").join(sql.Identifier(n) for n, _ in columns))
            convert = [(i, CONVERT[t]) for i, (_, t) in enumerate(columns) if t in CONVERT]
            with cur.copy(query) as copy:
                copy.set_types([COPY_AS.get(t, t) for _, t in columns])
                for row in batch:
                    if convert:
                        values = list(row)
                        for i, f in convert:
                            if values[i] is not None:
                                values[i] = f(values[i])
                        row = tuple(values)
                    copy.write_row(row)
