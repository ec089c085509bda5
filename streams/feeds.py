"""Per-jurisdiction feeds: the events of a jurisdiction's cases (its whole subtree) on their own topic.

A district subscribes to `appeals.events.<jurisdiction>.v1` and sees only its cases: the
same bytes, key and headers as on `appeals.events.v1`, in the same order per case.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from suqiu.base.config import Settings
from suqiu.domain import events as e
from suqiu.domain.refdata import Jurisdiction, ancestors
from suqiu.schemas.codec import Codec
from suqiu.streams.topics import feed_topic

if TYPE_CHECKING:
    from suqiu.streams.publishing import OutRecord

CACHE_SIZE = 100_000
Incoming = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


class JurisdictionFeeds:
    """Which feed topics a record goes to; a case's jurisdiction comes from its AppealSubmitted."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any], codec: Codec,
                 tree: Callable[[], Mapping[str, Jurisdiction]]) -> None:
        self.settings = settings
        self.feeds = frozenset(settings.jurisdiction_feeds)
        self.pool = pool
        self.codec = codec
        self.tree = tree
        self._jurisdiction: OrderedDict[str, str] = OrderedDict()

    async def by_topic(self, records: Sequence[Incoming]) -> dict[str, list[OutRecord]]:
        """The records each feed topic gets, in their order: same value, key and headers."""
        out: dict[str, list[OutRecord]] = defaultdict(list)
        routes = await self.route([(key, value) for key, value, _ in records])
        for (key, value, headers), topics in zip(records, routes, strict=True):
            for topic in topics:  # only a record keyed by a known case is routed
                out[topic].append(((key or b"").decode(), value or b"", headers))
        return out

    async def route(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[list[str]]:
        """For each (key, value), the feed topics it belongs on (none for unknown cases)."""
        case_ids = [k.decode() if k else "" for k, _ in records]
        await self._learn(records, {c for c in case_ids if c and c not in self._jurisdiction})
        out = []
        for case_id in case_ids:
            j = self._jurisdiction.get(case_id)
            feeds = [] if j is None else [n for n in ancestors(self.tree(), j) if n in self.feeds]
            out.append([feed_topic(self.settings, f) for f in feeds])
        return out

    async def _learn(self, records: Iterable[tuple[bytes | None, bytes | None]], unknown: set[str]) -> None:
        if not unknown:
            return
        # Most new cases arrive with their AppealSubmitted in the same batch; the rest are in the store.
        for key, value in records:
            case_id = key.decode() if key else ""
            if case_id in unknown and value:
                try:
                    ev = self.codec.decode_event(value)
                except ValueError:
                    continue
                if isinstance(ev.payload, e.AppealSubmitted):
                    self._remember(case_id, ev.payload.jurisdiction)
                    unknown.discard(case_id)
        if not unknown:
            return
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT case_id, data FROM events WHERE case_id = ANY(%s) AND seq = 1",
                                     (sorted(unknown),))
            for case_id, data in await cur.fetchall():
                payload = self.codec.decode_event(bytes(data)).payload
                if isinstance(payload, e.AppealSubmitted):
                    self._remember(case_id, payload.jurisdiction)

    def _remember(self, case_id: str, jurisdiction: str) -> None:
        self._jurisdiction[case_id] = jurisdiction
        if len(self._jurisdiction) > CACHE_SIZE:
            self._jurisdiction.popitem(last=False)
