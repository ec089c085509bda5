"""Create the contract topics (interface.md) with the configured prefix."""

from __future__ import annotations

import contextlib

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from streams.feeds import feed_topic
from suqiu.config import Settings

log = structlog.get_logger(__name__)


def partition_for(case_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this case id as a key."""
    return int(murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


def contract_topics(settings: Settings) -> list[str]:
    feeds = [feed_topic(settings, j) for j in settings.jurisdiction_feeds]
    return [settings.events_topic, settings.commands_topic, settings.results_topic, settings.dlq_topic, *feeds]


async def ensure_topics(settings: Settings, replication: int = 1, extra: list[str] | None = None) -> list[str]:
    """Create what is missing; returns the topics created now."""
    assert settings.kafka_bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
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
