"""A lean HTTP/1.1 keep-alive client for the load generator.

The load generator shares the two cores with everything it measures; aiohttp's client spent
~230 µs of CPU per request here, as much as a sixth of what the server side needed. This
client does what a benchmark needs and no more (as wrk does): JSON bodies, Content-Length
responses, one request at a time per connection, idle connections reused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson


class HttpError(Exception):
    pass


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, head: bytes, body: bytes) -> tuple[int, Any]:
        self.writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = -1
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise HttpError(f"response without Content-Length (status {status})")
        return status, orjson.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        self.writer.close()


class Client:
    """POSTs, PUTs and GETs JSON on one server; connections are opened as needed and reused when idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: deque[Connection] = deque()
        self._all: list[Connection] = []

    async def post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        return await self._send("POST", path, orjson.dumps(body), headers)

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        return await self._send("GET", path, b"", headers)

    async def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
                "Content-Type: application/json\r\n").encode()
        conn = self._idle.pop() if self._idle else await self._open()
        try:
            result = await conn.request(head, body)
        except BaseException:
            conn.close()
            self._all.remove(conn)
            raise
        self._idle.append(conn)
        return result

    async def _open(self) -> Connection:
        conn = Connection(*await asyncio.open_connection(self.host, self.port))
        self._all.append(conn)
        return conn

    async def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._idle.clear()
