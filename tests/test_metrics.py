"""Each Prometheus metric moves when its cause happens: real API, worker, broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import timedelta

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.domain.sla import CHINA
from suqiu.service.runtime import Runtime
from suqiu.streams.relay import run_relay
from tests.conftest import Api
from tests.support.kafka import faust_worker, produce
from tests.support.metrics import scrape, scraped_until, value
from tests.support.sla import caught_up, query


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_commands_are_counted_by_type_and_outcome_with_their_latency(api: Api) -> None:
    url = f"{api.base}/metrics"
    before = await scrape(url)
    case = (await api.submit())["case_id"]
    await api.submit()
    assert (await api.do("dispatcher", case, "dispatch", department="bh-nope"))[0] == 400
    assert (await api.do("dispatcher", case, "no_such_command"))[0] in (400, 422)
    after = await scrape(url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("suqiu_commands_total", type="submit", outcome="created") == 2
    assert moved("suqiu_commands_total", type="dispatch", outcome="invalid_input") == 1
    # A type no one knows is one series, whatever the sender writes.
    assert moved("suqiu_commands_total", type="unknown", outcome="invalid_input") == 1
    assert not any(dict(labels).get("type") == "no_such_command" for _, labels in after)
    assert moved("suqiu_command_seconds_count", type="submit") == 2
    assert moved("suqiu_command_seconds_bucket", type="submit", le="+Inf") == 2
    assert moved("suqiu_group_commit_commands_count") >= 1
    assert moved("suqiu_group_commit_commands_sum") == 2


async def test_the_outbox_relay_and_projector_lag_rise_while_unpublished_and_fall_once_caught_up(
        topics: Settings, api: Api, clock: ManualClock) -> None:
    url = f"{api.base}/metrics"
    cases = [(await api.submit())["case_id"] for _ in range(4)]
    clock.advance(timedelta(seconds=90))
    waiting = await scrape(url)
    assert value(waiting, "suqiu_outbox_depth") == len(cases)
    assert value(waiting, "suqiu_relay_lag_seconds") >= 90  # the oldest waits since its submit

    # The relay alone: the events are on the topic and the read models do not hold them yet.
    relay = asyncio.create_task(run_relay(topics))
    try:
        published = await scraped_until(url, lambda s: value(s, "suqiu_outbox_depth") == 0 and sum(
            v for (n, _), v in s.items() if n == "suqiu_projector_lag_events") == len(cases))
        assert value(published, "suqiu_outbox_depth") == 0 and value(published, "suqiu_relay_lag_seconds") == 0
        lags = {dict(labels)["partition"]: v for (n, labels), v in published.items()
                if n == "suqiu_projector_lag_events"}
        assert sum(lags.values()) == len(cases) and set(lags) <= {str(p) for p in range(topics.partitions)}, lags
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)

    async with faust_worker(topics, clock):
        for case in cases:
            await caught_up(topics, case)
        caught = await scraped_until(url, lambda s: all(
            v == 0 for (n, _), v in s.items() if n == "suqiu_projector_lag_events"))
    assert not [v for (n, _), v in caught.items() if n == "suqiu_projector_lag_events" and v], caught


async def test_sla_timers_due_and_overdue_while_no_worker_fires_them(
        topics: Settings, api: Api, clock: ManualClock) -> None:
    url = f"{api.base}/metrics"
    async with faust_worker(topics, clock):
        case = (await api.submit())["case_id"]
        await api.ok("dispatcher", case, "dispatch", department="bh-market")
        await caught_up(topics, case)
    timers = query(topics, "SELECT count(*), min(fire_at) FROM sla_timers WHERE case_id = %s", case)[0]
    assert timers[0] >= 1
    assert value(await scrape(url), "suqiu_sla_timers_due") == 0  # nothing is due yet

    clock.set(timers[1] + timedelta(seconds=30))  # the first is due, not yet late
    due = await scrape(url)
    assert value(due, "suqiu_sla_timers_due") >= 1 and value(due, "suqiu_sla_timers_overdue") == 0
    clock.advance(timedelta(minutes=5))  # no worker ran: it is late now
    late = await scrape(url)
    assert value(late, "suqiu_sla_timers_overdue") >= 1

    async with faust_worker(topics, clock):  # a worker comes back and fires them
        fired = await scraped_until(url, lambda s: value(s, "suqiu_sla_timers_overdue") == 0)
    assert value(fired, "suqiu_sla_timers_overdue") == 0


async def test_dead_letters_are_counted_on_the_workers_own_port(topics: Settings, runtime: Runtime, api: Api) -> None:
    port = _free_port()
    s = topics.with_(metrics_port=port)
    assert s.kafka_bootstrap
    url = f"http://127.0.0.1:{port}/metrics"
    async with faust_worker(s, runtime.clock):
        before = await scrape(url)
        await produce(s.kafka_bootstrap, s.events_topic, [(b"bad", b"not avro"), (b"worse", b"\x00junk")])
        await produce(s.kafka_bootstrap, s.commands_topic, [(str(uuid.uuid4()).encode(), b"{not json")])
        after = await scraped_until(url, lambda m: value(m, "suqiu_dead_letters_total", source=s.events_topic) -
                                    value(before, "suqiu_dead_letters_total", source=s.events_topic) >= 2
                                    and value(m, "suqiu_dead_letters_total", source=s.commands_topic) >= 1)
    assert value(after, "suqiu_dead_letters_total", source=s.events_topic) - \
        value(before, "suqiu_dead_letters_total", source=s.events_topic) == 2, after
    assert value(after, "suqiu_dead_letters_total", source=s.commands_topic) >= 1, after


async def test_calendar_coverage_counts_down_with_the_days(api: Api, runtime: Runtime, clock: ManualClock) -> None:
    url = f"{api.base}/metrics"
    through = runtime.policy.calendar.is_workday.official_through
    today = clock.now().astimezone(CHINA).date()
    assert value(await scrape(url), "suqiu_calendar_coverage_days") == (through - today).days
    clock.advance(timedelta(days=3))
    assert value(await scrape(url), "suqiu_calendar_coverage_days") == (through - today).days - 3
