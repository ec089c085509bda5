"""Consume appeals.events.v1 with confluent-kafka (librdkafka). The embedded broker (Tansu) needs
max.poll.interval.ms=3000 and session.timeout.ms=3000 or JoinGroup hangs; Apache Kafka does not.

    python examples/consumers/confluent_consumer.py BOOTSTRAP API_BASE [TOPIC] [GROUP]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from confluent_kafka import Consumer

try:
    from security import librdkafka
    from suqiu_avro import EventDecoder
except ImportError:
    from examples.consumers.security import librdkafka
    from examples.consumers.suqiu_avro import EventDecoder


def consume(bootstrap: str, api_base: str, topic: str = "appeals.events.v1", group: str = "my-system",
            limit: int | None = None, idle_seconds: float = 3.0) -> list[tuple[str, dict[str, Any]]]:
    decoder = EventDecoder(api_base)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "max.poll.interval.ms": 3000, "session.timeout.ms": 3000,
                         **librdkafka()})
    consumer.subscribe([topic])
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle_seconds + 10 * (not out) and (limit is None or len(out) < limit):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise RuntimeError(str(msg.error()))
            out.append(decoder.decode(msg.value() or b""))
            consumer.commit(message=msg, asynchronous=False)
            last = time.monotonic()
    finally:
        consumer.close()
    return out


if __name__ == "__main__":
    for name, record in consume(*sys.argv[1:5]):
        env = record["envelope"]
        sys.stdout.write(f"{env['case_id']} {env['seq']:>3} {name}\n")
