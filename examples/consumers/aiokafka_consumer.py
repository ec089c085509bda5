"""Consume appeals.events.v1 with aiokafka (what Faust uses): works on the embedded broker as is.

    python examples/consumers/aiokafka_consumer.py BOOTSTRAP API_BASE [TOPIC] [GROUP]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer

try:
    from security import python_client
    from suqiu_avro import EventDecoder
except ImportError:  # imported as a package (the tests)
    from examples.consumers.security import python_client
    from examples.consumers.suqiu_avro import EventDecoder


async def consume(bootstrap: str, api_base: str, topic: str = "appeals.events.v1", group: str = "my-system",
                  limit: int | None = None, idle_seconds: float = 3.0) -> list[tuple[str, dict[str, Any]]]:
    decoder = EventDecoder(api_base)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, **python_client())
    await consumer.start()
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        idle = 0.0
        while idle < idle_seconds and (limit is None or len(out) < limit):
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0.0 if batch else idle + 0.5
            for records in batch.values():
                for rec in records:
                    value = rec.value or b""
                    if not decoder.knows(value):
                        # The schema fetch is blocking HTTP: keep it off the event loop.
                        await asyncio.to_thread(decoder.writer, value[2:10].hex())
                    # At least once: the same (case_id, seq) may come twice; keep the first.
                    out.append(decoder.decode(value))
            await consumer.commit()  # after handling: a crash replays, never skips
    finally:
        await consumer.stop()
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    for name, record in asyncio.run(consume(*args[:4])):
        env = record["envelope"]
        sys.stdout.write(f"{env['case_id']} {env['seq']:>3} {name}\n")
