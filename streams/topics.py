"""The contract topics (docs/events.md): their names with the configured prefix, their creation,
and which partition a case's records go to."""

from __future__ import annotations

import contextlib

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from suqiu.base.config import Settings

log = structlog.get_logger(__name__)


def feed_topic(settings: Settings, jurisdiction: str) -> str:
    """The feed of one jurisdiction's cases (suqiu.streams.feeds)."""
    return settings.topic(f"appeals.events.{jurisdiction}.v1")


def partition_for(case_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this case id as a key."""
    return int(murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


def contract_topics(settings: Settings) -> list[str]:
    feeds = [feed_topic(settings, j) for j in settings.jurisdiction_feeds]
    return [settings.events_topic, settings.commands_topic, settings.results_topic, settings.dlq_topic, *feeds]


class TopicLayoutError(Exception):
    """A topic whose partition count is not the configured one: keys would land elsewhere."""


async def recreate(settings: Settings, topics: list[str], replication: int = 1) -> None:
    """Delete `topics` and create them again, empty and with the configured partition count.

    Only for topics rebuilt from the store, on a broker that lost them: what is on them now came
    from clients that kept sending to it, out of order with the republished history, and a
    client asking for a missing topic made the broker create it with its own default count
    (the embedded one: 4). A client may do that again between the delete and the create, so the
    shape is checked and the two repeated a few times.
    """
    assert settings.kafka_bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_security.client_kwargs())
    await admin.start()
    try:
        counts: dict[str, int] = {}
        for _ in range(5):
            await admin.delete_topics(topics)
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, settings.partitions, replication) for t in topics])
            counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
            if all(counts.get(t) == settings.partitions for t in topics):
                log.info("topics created again, empty", topics=topics, partitions=settings.partitions)
                return
            log.warning("a client created a topic between its delete and create; again", partitions=counts)
        raise TopicLayoutError(f"could not create {topics} with {settings.partitions} partitions: {counts}")
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, replication: int = 1, extra: list[str] | None = None) -> list[str]:
    """Create what is missing; returns the topics created now."""
    assert settings.kafka_bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_security.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in contract_topics(settings) if t not in existing]
        markers = [t for t in extra or [] if t not in existing]
        if wanted or markers:
            # Another process may create them concurrently; that is as good.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, settings.partitions, replication) for t in wanted]
                                          + [NewTopic(t, 1, replication) for t in markers])
            log.info("topics created", topics=wanted + markers, partitions=settings.partitions)
        return wanted + markers
    finally:
        await admin.close()
