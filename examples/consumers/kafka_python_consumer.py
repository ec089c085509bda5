"""Consume appeals.events.v1 with kafka-python. The embedded broker (Tansu) needs short group
timeouts or JoinGroup hangs: max_poll_interval_ms=3000, session_timeout_ms=3000,
heartbeat_interval_ms=500. Against Apache Kafka the defaults are fine.

    python examples/consumers/kafka_python_consumer.py BOOTSTRAP API_BASE [TOPIC] [GROUP]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from kafka import KafkaConsumer

try:
    from security import python_client
    from suqiu_avro import EventDecoder
except ImportError:
    from examples.consumers.security import python_client
    from examples.consumers.suqiu_avro import EventDecoder


def consume(bootstrap: str, api_base: str, topic: str = "appeals.events.v1", group: str = "my-system",
            limit: int | None = None, idle_seconds: float = 3.0) -> list[tuple[str, dict[str, Any]]]:
    decoder = EventDecoder(api_base)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, max_poll_interval_ms=3000, session_timeout_ms=3000,
                             heartbeat_interval_ms=500, **python_client())
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle_seconds + 10 * (not out) and (limit is None or len(out) < limit):
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    out.append(decoder.decode(rec.value or b""))
                last = time.monotonic()
            if batch:
                consumer.commit()
    finally:
        consumer.close()
    return out


if __name__ == "__main__":
    for name, record in consume(*sys.argv[1:5]):
        env = record["envelope"]
        sys.stdout.write(f"{env['case_id']} {env['seq']:>3} {name}\n")
