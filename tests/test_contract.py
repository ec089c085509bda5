"""The downstream contract: the AsyncAPI document matches the schemas, and the example consumers
(aiokafka, kafka-python, confluent-kafka) decode every event type from the embedded broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import fastavro
import pytest

from examples.consumers import aiokafka_consumer, confluent_consumer, kafka_python_consumer
from suqiu.base.config import Settings
from suqiu.domain.events import EVENT_TYPES
from suqiu.schemas import asyncapi
from suqiu.schemas.codec import GENESIS, Codec
from suqiu.service.runtime import Runtime
from tests.conftest import Api
from tests.support.events import event
from tests.support.kafka import produce

ROOT = Path(__file__).resolve().parent.parent


def test_asyncapi_document_is_generated_from_the_schemas() -> None:
    checked_in = (ROOT / "docs" / "asyncapi.json").read_text("utf-8")
    assert checked_in == asyncapi.render(), "run: python -m suqiu.schemas.asyncapi > docs/asyncapi.json"
    doc = json.loads(checked_in)
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]["events"]["messages"]) == set(EVENT_TYPES)
    for name in [*EVENT_TYPES, "Command", "CommandResult"]:
        fastavro.parse_schema(doc["components"]["messages"][name]["payload"]["schema"])
    docs = (ROOT / "docs" / "events.md").read_text("utf-8")
    for ch in doc["channels"].values():
        assert ch["address"] in docs
    for name in EVENT_TYPES:
        assert f"`{name}`" in docs, f"docs/events.md does not describe {name}"


@pytest.mark.parametrize("client", ["aiokafka", "kafka-python", "confluent-kafka"])
async def test_example_consumer_decodes_every_event_type(topics: Settings, runtime: Runtime, api: Api,
                                                         client: str) -> None:
    s = topics
    assert s.kafka_bootstrap
    codec = Codec()
    records = []
    for i, cls in enumerate(sorted(EVENT_TYPES.values(), key=lambda c: c.__name__), 1):
        data, _ = codec.encode_event(event(cls, seq=i), GENESIS)
        records.append((b"case-1", data))
    await produce(s.kafka_bootstrap, s.events_topic, records)
    group = f"{client}-{uuid.uuid4().hex[:6]}"
    if client == "aiokafka":
        got = await aiokafka_consumer.consume(s.kafka_bootstrap, api.base, s.events_topic, group, len(records))
    elif client == "kafka-python":
        got = await asyncio.to_thread(kafka_python_consumer.consume, s.kafka_bootstrap, api.base, s.events_topic,
                                      group, len(records))
    else:
        got = await asyncio.to_thread(confluent_consumer.consume, s.kafka_bootstrap, api.base, s.events_topic,
                                      group, len(records))
    assert sorted(name for name, _ in got) == sorted(EVENT_TYPES)
    assert [r["envelope"]["seq"] for _, r in got] == list(range(1, len(records) + 1))  # one key: in order
    assert all(r["envelope"]["case_id"] == "case-1" for _, r in got)


def test_every_event_type_has_its_chinese_name_on_the_board() -> None:
    from suqiu.domain.labels import EVENT_NAMES

    assert set(EVENT_NAMES) == set(EVENT_TYPES)
    assert all(EVENT_NAMES.values())
