"""Federation (上报) between deployments: an escalated case becomes a linked case upstream, and
the upstream answer comes back as UpperLevelReplied on the original.

Each worker only reads its own store and its own events topic and writes commands to the
other system's commands topic (`SUQIU_FEDERATION`: system id = topic prefix, on one broker):
- on its own `AppealEscalated`, it submits the case to the target system with channel
  `upper_level`, source_system = this system and source_ref = this case id (the link);
- on its own `AppealClosed` of such an upstream case, it sends `upper_level_reply` with the
  reply and the outcome, and its own case id as `upper_case_id` (the link back).
Command ids derive from the events, and both systems deduplicate, so redelivery changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from suqiu.base.config import Settings
from suqiu.domain import events as e
from suqiu.domain.evolve import replay_state
from suqiu.domain.model import Actor, Role
from suqiu.domain.personal import shown_contact, shown_text
from suqiu.schemas import cloudevents
from suqiu.schemas.codec import Codec
from suqiu.service.personal import PersonalData
from suqiu.store.events import read_case
from suqiu.streams.dlq import Outgoing
from suqiu.streams.signing import sign

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("7e0b5a3c-2f4d-4a8e-b6c1-5d9f3e2a1b07")


class FederationBridge:
    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any], codec: Codec,
                 personal: PersonalData) -> None:
        self.settings = settings
        self.pool = pool
        self.codec = codec
        self.personal = personal
        self.actor = Actor(settings.system_id, Role.SYSTEM, person="federation")

    def commands_topic(self, system: str) -> str | None:
        prefix = self.settings.federation.get(system)
        return None if prefix is None else f"{prefix}appeals.commands.v1"

    async def forward(self, values: Iterable[bytes | None]) -> list[Outgoing]:
        """The commands a batch of our own events sends to other systems."""
        out: list[Outgoing] = []
        for value in values:
            try:
                ev = self.codec.decode_event(value or b"")
            except ValueError:
                continue  # the read-models agent dead-letters it
            command = await self.handle(ev)
            if command is not None:
                out.append(command)
        return out

    async def handle(self, ev: e.Event) -> Outgoing | None:
        """The command this event sends to another system, if any."""
        if isinstance(ev.payload, e.AppealEscalated):
            return await self._escalate(ev, ev.payload)
        if isinstance(ev.payload, e.AppealClosed):
            return await self._answer(ev, ev.payload)
        return None

    async def _history(self, case_id: str) -> list[e.Event]:
        async with self.pool.connection() as conn:
            return [self.codec.decode_event(bytes(d)) for d in await read_case(conn, case_id)]

    async def _escalate(self, ev: e.Event, p: e.AppealEscalated) -> Outgoing | None:
        topic = self.commands_topic(p.target_system)
        if topic is None:
            return None
        history = await self._history(ev.case_id)
        first = history[0].payload
        assert isinstance(first, e.AppealSubmitted)
        # The upper level handles the case from here: it gets the contact, to seal under its own key.
        case = replay_state(ev.case_id, history)
        opened = (await self.personal.opened([case]))[ev.case_id]
        contact = shown_contact(opened, plain=True) if opened is not None else {}
        command_id = str(uuid.uuid5(NAMESPACE, f"{self.settings.system_id}/{ev.case_id}/{ev.seq}/escalate"))
        body = {
            "source_system": self.settings.system_id, "source_ref": ev.case_id,
            "enterprise": {"uscc": first.enterprise.uscc, "name": first.enterprise.name,
                           "contact_name": contact.get("contact_name"), "contact_phone": contact.get("contact_phone")},
            "channel": "upper_level", "category": first.category, "priority": first.priority,
            "jurisdiction": first.jurisdiction, "title": shown_text(first.title, opened, plain=True),
            "content": f"{shown_text(first.content, opened, plain=True)}\n\n【{self.settings.system_id} 上报理由】"
                       f"{p.reason}", "occurred_at": None,
        }
        value = self.codec.encode_command("submit", body, command_id=command_id, actor=self.actor,
                                          correlation_id=ev.correlation_id)
        return Outgoing(topic, command_id.encode(), value,
                        self._headers(p.target_system, ev, "submit", command_id, value))

    async def _answer(self, ev: e.Event, p: e.AppealClosed) -> Outgoing | None:
        history = await self._history(ev.case_id)
        first = history[0].payload
        if not isinstance(first, e.AppealSubmitted) or first.channel != "upper_level":
            return None
        topic = self.commands_topic(first.source_system)
        if topic is None:
            return None
        replies = [h.payload.content for h in history[: ev.seq] if isinstance(h.payload, e.AppealReplied)]
        content = f"{replies[-1] if replies else '（无答复内容）'}\n【{self.settings.system_id} 办结】{p.outcome}"
        command_id = str(uuid.uuid5(NAMESPACE, f"{self.settings.system_id}/{ev.case_id}/{ev.seq}/answer"))
        value = self.codec.encode_command("upper_level_reply", {"upper_case_id": ev.case_id, "content": content},
                                          command_id=command_id, actor=self.actor, case_id=first.source_ref,
                                          correlation_id=ev.correlation_id)
        return Outgoing(topic, first.source_ref.encode(), value,
                        self._headers(first.source_system, ev, "upper_level_reply", command_id, value))

    def _headers(self, system: str, cause: e.Event, command_type: str, command_id: str,
                 value: bytes) -> list[tuple[str, bytes]]:
        """The command's CloudEvents attributes, and its signature: the other system authenticates
        our commands by the key it issued us (suqiu.streams.signing)."""
        ce = cloudevents.command_headers(self.settings.system_id, cause.case_id, command_type, command_id,
                                         cause.occurred_at, value)
        secret = self.settings.federation_keys.get(system)
        if secret is None:
            log.error("no key for the other system: it will refuse this command as unauthorized", system=system)
            return ce
        return [*ce, *sign(secret, value)]
