"""Hash-chain verification of the store, and comparison with the independent copies.

The chain (README, Architecture) catches an edited, deleted, inserted or reordered event anywhere but
at the end of a case. A tamperer who rewrites a chain consistently is caught by the copies
kept elsewhere: the events topic, byte for byte, and the chain heads of an earlier export.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition

from suqiu.base.kafka_security import KafkaSecurity
from suqiu.schemas.codec import GENESIS, HASH_SIZE, HEADER, MAGIC, Codec, chain_hash


@dataclass(frozen=True, slots=True)
class Problem:
    case_id: str
    seq: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"case {self.case_id} seq {self.seq}: {self.kind}: {self.detail}"


@dataclass
class Report:
    cases: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class ChainChecker:
    """Feed rows in (case, seq) order; every break is reported with its case and seq."""

    def __init__(self, codec: Codec) -> None:
        self.known = {bytes.fromhex(fp): info.name.rsplit(".", 1)[1]
                      for fp, info in codec.by_fingerprint.items() if info.kind == "event"}
        self.report = Report()
        self._case: str | None = None
        self._seq = 0
        self._prev = GENESIS

    def feed(self, case_id: str, seq: int, data: bytes, column_hash: bytes | None, event_type: str | None) -> None:
        r = self.report
        if case_id != self._case:
            self._case, self._seq, self._prev = case_id, 0, GENESIS
            r.cases += 1
        r.events += 1
        if seq != self._seq + 1:
            missing = f"seq {self._seq + 1}" + (f" to {seq - 1}" if seq - 1 > self._seq + 1 else "")
            r.problems.append(Problem(case_id, self._seq + 1, "missing", f"{missing} absent (deleted?)"))
        if data[:2] != MAGIC or len(data) < HEADER + HASH_SIZE:
            r.problems.append(Problem(case_id, seq, "malformed", "not an Avro single-object event"))
        else:
            name = self.known.get(data[2:HEADER])
            if name is None:
                r.problems.append(Problem(case_id, seq, "unknown schema", data[2:HEADER].hex()))
            elif event_type is not None and name != event_type:
                r.problems.append(Problem(case_id, seq, "type", f"bytes say {name}, row says {event_type}"))
        carried = data[-HASH_SIZE:]
        computed = chain_hash(self._prev, data[HEADER:-HASH_SIZE])
        if computed != carried:
            r.problems.append(Problem(case_id, seq, "chain broken",
                                      "hash does not match the previous hash and this event's bytes "
                                      "(edited, inserted, deleted before it, or reordered)"))
        if column_hash is not None and column_hash != carried:
            r.problems.append(Problem(case_id, seq, "hash column", "the row's hash differs from the event's"))
        # Continue from what the event carries, so one edit is one report, not a cascade.
        self._seq, self._prev = seq, carried
        r.heads[case_id] = (seq, carried.hex())


def verify_store(conn: psycopg.Connection[Any], codec: Codec, case_id: str | None = None,
                 progress: Callable[[int], None] | None = None) -> Report:
    """Recompute every chain (or one case's) straight from the events table."""
    checker = ChainChecker(codec)
    for case, seq, data, column_hash, event_type in _rows(conn, case_id):
        checker.feed(case, seq, data, column_hash, event_type)
        if progress is not None and checker.report.events % 10_000 == 0:
            progress(10_000)
    return checker.report


def _rows(conn: psycopg.Connection[Any], case_id: str | None) -> Iterator[tuple[str, int, bytes, bytes, str]]:
    sql = "SELECT case_id, seq, data, hash, event_type FROM events"
    params: tuple[Any, ...] = ()
    if case_id is not None:
        sql += " WHERE case_id = %s"
        params = (case_id,)
    with conn.transaction(), conn.cursor(name="verify") as cur:
        cur.itersize = 20_000
        cur.execute(sql + " ORDER BY case_id, seq", params)
        for case, seq, data, h, t in cur:
            yield case, seq, bytes(data), bytes(h), t


@dataclass
class TopicDiff:
    store_events: int = 0
    topic_records: int = 0
    missing_on_topic: list[tuple[str, int, str]] = field(default_factory=list)
    missing_in_store: list[tuple[str, str]] = field(default_factory=list)
    different: list[tuple[str, int, str]] = field(default_factory=list)
    out_of_order: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing_on_topic or self.missing_in_store or self.different or self.out_of_order)


def read_topic_digests(bootstrap: str, topic: str, idle_ms: int = 1500,
                       security: KafkaSecurity | None = None) -> dict[str, tuple[bytes, list[int]]]:
    """event id -> (SHA-256 of the value, seqs as seen in topic order), for every record on `topic`.

    A blocking, one-shot read: kafka-python's consumer, as every synchronous tool uses (README,
    Libraries). End offsets from this broker's ListOffsets are not trustworthy, so reading stops
    once nothing more arrives for `idle_ms`.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest", **(security or KafkaSecurity()).client_kwargs())
    out: dict[str, tuple[bytes, list[int]]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        if not tps:
            return out
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        quiet_since = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=300, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    value = rec.value or b""
                    headers = dict(rec.headers or ())
                    event_id = (headers.get("event_id") or b"").decode() or hashlib.sha256(value).hexdigest()
                    digest = hashlib.sha256(value).digest()
                    prior = out.get(event_id)
                    seqs = prior[1] if prior else []
                    seqs.append(rec.offset)
                    out[event_id] = (digest if prior is None or prior[0] == digest else b"", seqs)
            if batch:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle_ms / 1000:
                return out
    finally:
        consumer.close()


def compare_with_topic(store_rows: Iterable[tuple[str, int, str, bytes]],
                       topic: dict[str, tuple[bytes, list[int]]]) -> TopicDiff:
    """store rows are (case, seq, event id, bytes); lists what either side lacks or holds differently."""
    diff = TopicDiff(topic_records=sum(len(v[1]) for v in topic.values()))
    seen: set[str] = set()
    for case, seq, event_id, data in store_rows:
        diff.store_events += 1
        seen.add(event_id)
        on_topic = topic.get(event_id)
        if on_topic is None:
            diff.missing_on_topic.append((case, seq, event_id))
        elif on_topic[0] != hashlib.sha256(data).digest():
            diff.different.append((case, seq, event_id))
    diff.missing_in_store = sorted((eid, "on the topic, not in the store") for eid in topic if eid not in seen)
    return diff


def store_rows(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, int, str, bytes]]:
    with conn.transaction(), conn.cursor(name="against_topic") as cur:
        cur.itersize = 20_000
        cur.execute("SELECT case_id, seq, event_id::text, data FROM events ORDER BY case_id, seq")
        for case, seq, eid, data in cur:
            yield case, seq, eid, bytes(data)


def compare_heads(conn: psycopg.Connection[Any], heads: dict[str, dict[str, Any]]) -> list[Problem]:
    """An earlier export's chain heads must still be in the store, unchanged, at their seq."""
    problems = []
    wanted = [(case, int(h["last_seq"])) for case, h in heads.items()]
    rows = conn.execute(
        "SELECT w.case_id, w.seq, e.hash FROM unnest(%s::text[], %s::int[]) AS w(case_id, seq) "
        "LEFT JOIN events e ON e.case_id = w.case_id AND e.seq = w.seq",
        ([c for c, _ in wanted], [s for _, s in wanted])).fetchall()
    for case, seq, h in rows:
        if h is None:
            problems.append(Problem(case, seq, "missing", "the exported chain head is no longer in the store"))
        elif bytes(h).hex() != heads[case]["head_hash"]:
            problems.append(Problem(case, seq, "rewritten", "the store's hash differs from the exported chain head"))
    return problems
