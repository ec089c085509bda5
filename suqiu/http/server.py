"""Run the HTTP API: a Runtime, a broker probe for /v1/health, aiohttp until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiokafka import AIOKafkaClient

from suqiu.base.config import Settings
from suqiu.base.kafka_security import KafkaSecurity, check_broker
from suqiu.http.api import create_app
from suqiu.http.common import ENCODINGS, STATUS, error_response
from suqiu.service.runtime import Runtime

log = structlog.get_logger(__name__)


def broker_probe(bootstrap: str, security: KafkaSecurity | None = None) -> Callable[[], Awaitable[str]]:
    connect = (security or KafkaSecurity()).client_kwargs()

    async def probe() -> str:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **connect)
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


# The parser quotes the offending line as a bytes literal, with a caret under the fault: for a
# header that is its value, which may be a live key or a session token.
_QUOTE = re.compile(r"""b['"]""")
_HEADER_NAME = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):")


def redacted(reason: str) -> str:
    """The parser's reason without what the request carried: a quoted line becomes its header's name."""
    kept = []
    for line in reason.splitlines():
        if not line.strip(" ^"):
            continue  # the caret under a quoted line
        quote = _QUOTE.search(line)
        if quote is not None:
            name = _HEADER_NAME.match(line, quote.end())
            line = line[:quote.start()] + (f"in the {name.group(1)} header (value not shown)" if name else "(not shown)")
        kept.append(line.strip())
    return " ".join(k for k in kept if k) or "malformed HTTP request"


class _JsonErrors(RequestHandler):
    """aiohttp's connection handler, answering its parser's refusals in the API's error shape."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 and status != 501:
            return super().handle_error(request, status, exc, message)
        # A malformed request is the client's: no traceback, and the parser's words, never the
        # request's own bytes, as the reason.
        reason = redacted(getattr(exc, "message", None) or message or "")
        code = _PARSER_CODES.get(status, "invalid_input")
        if isinstance(exc, ContentEncodingError):  # br, zstd: encodings this server does not take
            code, status, reason = "unsupported_encoding", 415, f"{reason.split(' Please install')[0].rstrip('.')}; {ENCODINGS}"
        log.info("request refused by the HTTP parser", status=status, reason=reason)
        response = error_response(code, f"malformed request: {reason}", rule="HTTP/1.1 message syntax")
        response.set_status(status if status != 501 else 415)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A body that does not decode as its Content-Encoding says is refused with a 400 by the
        # handler; aiohttp then meets the same fault draining the rest of it. The client's fault,
        # not a traceback for the error alerts.
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | ContentEncodingError):
            log.info("request body not drained: it does not decode", error=redacted(str(exc)))
            return
        super().log_exception(*args, **kw)


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
    assert settings.kafka_bootstrap
    await check_broker(settings.kafka_bootstrap, settings.kafka_security)
    runtime = await (runtime or Runtime(settings)).open()
    app = create_app(runtime, broker_probe(settings.kafka_bootstrap, settings.kafka_security))
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
