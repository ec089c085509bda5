"""Records to a topic keyed by case id, in order per case even when a send fails for good."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from suqiu.schemas import cloudevents
from suqiu.streams.topics import TopicLayoutError, partition_for

log = structlog.get_logger(__name__)
HOLD_FIRST, HOLD_MAX = 1.0, 30.0  # seconds between tries of a batch the broker did not take

# (case id, value, headers), as published on the events topic and on each feed.
OutRecord = tuple[str, bytes, list[tuple[str, bytes]]]


# The columns of `events` that stored_record takes, in its order after the system id.
STORED_COLUMNS = "case_id, seq, data, event_type, event_id::text, occurred_at"


def stored_record(system_id: str, case_id: str, seq: int, data: bytes, event_type: str, event_id: str,
                  occurred_at: datetime) -> OutRecord:
    """A stored event as the events topic carries it: keyed by case id; type, id and seq in
    headers, and the CloudEvents attributes (suqiu.schemas.cloudevents).

    The seq lets a consumer pass over what it already holds (a republish) without decoding it.
    """
    value = bytes(data)
    return case_id, value, [("event_type", event_type.encode()), ("event_id", event_id.encode()),
                            ("seq", str(seq).encode()),
                            *cloudevents.headers(system_id, case_id, event_type, event_id, occurred_at, value)]


async def publish(producer: AIOKafkaProducer, topic: str, records: Sequence[OutRecord],
                  partitions: int) -> dict[int, list[int]]:
    """`records` to `topic`, keyed by case id, in order; per partition, the offset of each of its
    records, in the order given (so the last one is the partition's head).

    `partitions` is the configured count: a case's partition must not depend on what the broker
    says today. Returns once the broker has acknowledged every record; on a failure, raises with
    no record sent past the one that failed in its partition, so sending all of them again keeps
    each case's first appearances in order (at least once).
    """
    found = len(await producer.partitions_for(topic))
    if found != partitions:
        raise TopicLayoutError(f"{topic} has {found} partitions, SUQIU_PARTITIONS says {partitions}: "
                               "create it with that many, or set SUQIU_PARTITIONS to match")
    shares: dict[int, list[OutRecord]] = defaultdict(list)
    for record in records:
        shares[partition_for(record[0], partitions)].append(record)
    sending = [asyncio.ensure_future(_publish_share(producer, topic, p, share)) for p, share in shares.items()]
    try:
        placed = await asyncio.gather(*sending)
    except BaseException:
        for task in sending:
            task.cancel()  # no partition sends past a failure elsewhere either: all is retried
        raise
    return dict(zip(shares, placed, strict=True))


async def publish_held(producer: AIOKafkaProducer, by_topic: Mapping[str, Sequence[OutRecord]],
                       partitions: int) -> None:
    """Publish each topic's records, trying all of them again until the broker has taken them.

    For an agent forwarding a batch: its offsets move only after this returns, so nothing is
    skipped, and a failed try sent nothing past its failure, so cases stay in order.
    """
    held = HOLD_FIRST
    while True:
        tries = (publish(producer, topic, records, partitions) for topic, records in by_topic.items())
        failed = [r for r in await asyncio.gather(*tries, return_exceptions=True) if isinstance(r, BaseException)]
        if not failed:
            return
        error = failed[0]
        if not isinstance(error, KafkaError | TopicLayoutError):
            raise error
        # A topic of the wrong shape waits for an operator (or the relay); an outage passes.
        say = log.error if isinstance(error, TopicLayoutError) else log.warning
        say("the broker did not take a batch; holding it", error=str(error), retry_in=held, topics=sorted(by_topic))
        await asyncio.sleep(held)
        held = min(held * 2, HOLD_MAX)


async def _publish_share(producer: AIOKafkaProducer, topic: str, partition: int,
                         records: list[OutRecord]) -> list[int]:
    """One partition's records as whole batches, each sent once the one before it is acknowledged.

    aiokafka sends a partition's next batch even when the one before it failed for good (a
    non-retriable error, or a batch expired while the broker was away), which would put a
    case's later events on the topic ahead of the failed ones.
    """
    offsets: list[int] = []
    i = 0
    while i < len(records):
        batch, start = producer.create_batch(), i
        for case_id, value, headers in records[start:]:
            if batch.append(key=case_id.encode(), value=value, timestamp=None, headers=headers) is None:
                break  # full; a batch always takes its first record
            i += 1
        batch.close()  # nothing else may join it through producer.send
        sent = await (await producer.send_batch(batch, topic, partition=partition))
        offsets.extend(range(sent.offset, sent.offset + i - start))  # a batch's records are contiguous
    return offsets
