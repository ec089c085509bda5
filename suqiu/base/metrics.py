"""The Prometheus metrics of one Suqiu process (监控指标), in a registry of its own.

Counters and histograms count what this process did: commands, group commits, dead letters.
Gauges of the store as a whole (outbox, lag, quarantine, timers, calendar) are read from
PostgreSQL when scraped, by the API only, so N workers do not report one figure N times.
docs/operations.md says how to read them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from suqiu.domain.commands import COMMAND_TYPES

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """One process's metrics; `registry` is what an exporter serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter("suqiu_commands", "Commands handled, by type and outcome (a status or a refusal code)",
                                ["type", "outcome"], registry=r)
        self.command_seconds = Histogram("suqiu_command_seconds", "Time to decide and store one command",
                                         ["type"], buckets=LATENCY_BUCKETS, registry=r)
        self.group_commit = Histogram("suqiu_group_commit_commands", "Commands stored per group commit",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.dead_letters = Counter("suqiu_dead_letters", "Records this process dead-lettered, by source topic",
                                    ["source"], registry=r)
        self.skipped = Counter("suqiu_projector_skipped_events",
                               "Republished events a worker sought past because the read models hold them",
                               registry=r)
        self.outbox_depth = Gauge("suqiu_outbox_depth", "Stored events the relay has not yet published",
                                  registry=r)
        self.relay_lag = Gauge("suqiu_relay_lag_seconds",
                               "Age of the oldest event waiting in the outbox (0 when it is empty)", registry=r)
        self.projector_lag = Gauge("suqiu_projector_lag_events",
                                   "Events published to a partition and not yet in the read models",
                                   ["partition"], registry=r)
        self.quarantined = Gauge("suqiu_quarantined_cases", "Cases the read models hold back", registry=r)
        self.timers_due = Gauge("suqiu_sla_timers_due", "SLA timers whose time has come and that are not yet fired",
                                registry=r)
        self.timers_overdue = Gauge("suqiu_sla_timers_overdue",
                                    "SLA timers due for longer than a minute: the timer workers fall behind",
                                    registry=r)
        self.dead_letters_stored = Gauge("suqiu_dead_letters_stored",
                                         "Dead letters too large for the topic, kept in PostgreSQL", registry=r)
        self.calendar_days = Gauge("suqiu_calendar_coverage_days",
                                   "Days from today to the last day of the official business calendar", registry=r)

    def command(self, command_type: str, outcome: str, started: float | None) -> None:
        """Count one command, and its latency since `started` (None: one of a bulk create, whose
        time is the batch's). A type no one knows is counted as `unknown`, so a hostile sender
        cannot add series."""
        kind = command_type if command_type in COMMAND_TYPES else "unknown"
        self.commands.labels(kind, outcome).inc()
        if started is not None:
            self.command_seconds.labels(kind).observe(time.perf_counter() - started)

    def dead_lettered(self, source_topic: str) -> None:
        self.dead_letters.labels(source_topic or "unknown").inc()

    def serve(self, port: int, host: str = "0.0.0.0") -> Callable[[], None]:
        """Serve the registry on its own port (a worker has no HTTP API); returns how to stop it."""
        server, thread = start_http_server(port, host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            thread.join(5)

        return stop

    def store(self, gauges: Mapping[str, Any], lags: Mapping[int, int], calendar_days: int) -> None:
        """Set the store-wide gauges from what suqiu.projections.queries.operations read."""
        self.outbox_depth.set(gauges["outbox"])
        self.relay_lag.set(gauges["outbox_age_seconds"])
        self.quarantined.set(gauges["quarantined"])
        self.timers_due.set(gauges["timers_due"])
        self.timers_overdue.set(gauges["timers_overdue"])
        self.dead_letters_stored.set(gauges["dead_letters_stored"])
        self.calendar_days.set(calendar_days)
        self.projector_lag.clear()
        for partition, lag in lags.items():
            self.projector_lag.labels(str(partition)).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)
