"""Run the HTTP API: a Runtime, a broker probe for /v1/health, aiohttp until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiokafka import AIOKafkaClient

from suqiu.api import create_app
from suqiu.config import Settings
from suqiu.runtime import Runtime

log = structlog.get_logger(__name__)


def broker_probe(bootstrap: str) -> Callable[[], Awaitable[str]]:
    async def probe() -> str:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(client.bootstrap(), 3.0)
            return "ok"
        except Exception as exc:
            return f"unreachable: {exc.__class__.__name__}"
        finally:
            await client.close()
    return probe


async def serve(settings: Settings, runtime: Runtime | None = None) -> int:
    runtime = await (runtime or Runtime(settings)).open()
    assert settings.kafka_bootstrap
    app = create_app(runtime, broker_probe(settings.kafka_bootstrap))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_port=True, backlog=1024)
    await site.start()
    log.info("http api listening", url=f"http://{settings.http_host}:{settings.http_port}/v1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await runtime.close()
    return 0
