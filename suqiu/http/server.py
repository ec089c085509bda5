"""Run the HTTP API: a Runtime, a broker probe for /v1/health, aiohttp until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiokafka import AIOKafkaClient

from suqiu.base.config import Settings
from suqiu.http.api import create_app
from suqiu.http.common import STATUS, error_response
from suqiu.service.runtime import Runtime

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


# What aiohttp's own parser refuses (before any middleware runs), as codes of the error contract.
# It answers a Transfer-Encoding it does not know with 501: to the client that is a 415 as well.
_PARSER_CODES = {status: code for code, status in STATUS.items() if status in (405, 413, 415, 431)}
_PARSER_CODES[501] = _PARSER_CODES[415]


class _JsonErrors(RequestHandler):
    """aiohttp's connection handler, answering its parser's refusals in the API's error shape."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 and status != 501:
            return super().handle_error(request, status, exc, message)
        # A malformed request is the client's: no traceback, and the parser's own words as the reason.
        log.info("request refused by the HTTP parser", status=status, reason=str(exc or message or ""))
        reason = getattr(exc, "message", None) or message or "malformed HTTP request"
        response = error_response(_PARSER_CODES.get(status, "invalid_input"), f"malformed request: {reason}",
                                  rule="HTTP/1.1 message syntax")
        response.set_status(status if status != 501 else 415)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrors(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """The API's runner: every answer, the HTTP parser's refusals included, in the error contract."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same object and layout, one method more
        return server


async def serve(settings: Settings, runtime: Runtime | None = None) -> int:
    runtime = await (runtime or Runtime(settings)).open()
    assert settings.kafka_bootstrap
    app = create_app(runtime, broker_probe(settings.kafka_bootstrap))
    runner = ApiRunner(app, access_log=None)
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
