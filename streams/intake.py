"""Kafka command intake: decode, execute through the shared command path, answer or dead-letter."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from suqiu.base.config import Settings
from suqiu.domain import DomainError
from suqiu.domain.access import Principal
from suqiu.schemas.codec import Codec, DecodeError
from suqiu.service.commands import CommandRequest, CommandService
from suqiu.store.keys import KeyResolver
from suqiu.streams.dlq import Outgoing, dead_letter, park
from suqiu.streams.signing import KEY_HEADER, SIGNATURE_HEADER, claimed_key, verified

log = structlog.get_logger(__name__)


class CommandIntake:
    """Turns one command record into one outgoing record: a result, or the input dead-lettered."""

    def __init__(self, settings: Settings, service: CommandService, codec: Codec,
                 pool: AsyncConnectionPool[Any], keys: KeyResolver) -> None:
        self.settings = settings
        self.service = service
        self.codec = codec
        self.pool = pool
        self.keys = keys

    async def handle(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> Outgoing:
        """Exactly one answer per record: its result (accepted, duplicate or rejected) or a dead letter."""
        try:
            type_name, meta, body = self.codec.decode_command(value or b"")
        except DecodeError as exc:
            return await park(self.pool, self._dead_letter(key, value, headers, str(exc)))
        bound = log.bind(command_id=meta["command_id"], case_id=meta["case_id"])
        try:
            principal = await self._signer(value or b"", headers)
            # Who acts is the signing key's; the payload's actor gives only the person's name.
            actor = dataclasses.replace(principal.actor, person=meta["actor"]["person"])
            request = CommandRequest(
                type_name, meta["command_id"], actor, body, case_id=meta["case_id"],
                expected_seq=meta["expected_seq"], correlation_id=meta["correlation_id"], principal=principal,
            )
            result: dict[str, Any] = (await self._execute(request)).as_dict()
        except DomainError as exc:
            (bound.error if exc.configuration else bound.info)("kafka command refused", code=exc.code,
                                                                reason=exc.message)
            result = {"command_id": meta["command_id"], "case_id": meta["case_id"], "status": "rejected",
                      "error": exc.as_dict()}
        except Exception as exc:  # whatever handling this record raised is its answer: the agent goes on
            bound.exception("kafka command failed")
            result = {"command_id": meta["command_id"], "case_id": meta["case_id"], "status": "rejected",
                      "error": {"code": "internal", "message": f"internal error; nothing was stored "
                                                               f"({type(exc).__name__})", "details": {}}}
        try:
            return Outgoing(self.settings.results_topic, meta["command_id"].encode(), self.codec.encode_result(result),
                            [])
        except Exception as exc:  # an id the result cannot carry (not UTF-8): the input is the answer
            return await park(self.pool, self._dead_letter(key, value, headers, f"unanswerable command: {exc}"))

    async def _signer(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Principal:
        """The principal whose key signed the record (suqiu.streams.signing), or `unauthorized`."""
        claimed = claimed_key(headers)
        if claimed is None:
            raise DomainError("unauthorized", f"unsigned command: sign it with an API key ({KEY_HEADER} and "
                              f"{SIGNATURE_HEADER} headers)", rule="commands on Kafka are signed by their key")
        principal = verified(await self.keys.by_prefix(claimed[0]), value, claimed[1])
        if principal is None:
            raise DomainError("unauthorized", f"no live key {claimed[0]!r} signed this record",
                              rule="commands on Kafka are signed by their key", key_prefix=claimed[0])
        return principal

    async def _execute(self, request: CommandRequest) -> Any:
        # A database outage must not turn into lost or rejected commands: hold the partition and retry.
        delay = 0.2
        while True:
            try:
                return await self.service.execute(request)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable, retrying command", command_id=request.command_id, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dead_letter(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]],
                     reason: str) -> Outgoing:
        return dead_letter(self.settings.dlq_topic, self.settings.commands_topic, key, value, headers, reason)
