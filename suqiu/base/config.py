"""Settings from SUQIU_* environment variables: the same names embedded and in docker-compose."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from suqiu.base.kafka_security import KafkaSecurity

# Where `suqiu up` writes its endpoints by default (its --state-dir is `.suqiu`).
EMBEDDED_ENDPOINTS = Path(".suqiu") / "endpoints.json"
DEFAULT_HTTP_PORT = 8080


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    system_id: str = "tj-binhai"
    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    sla_policy: str | None = None
    topic_prefix: str = ""
    partitions: int = 6
    timer_interval: float = 0.5
    projector_batch: int = 2000
    projector_processes: int = 1
    jurisdiction_feeds: tuple[str, ...] = ()
    # /v1/health answers degraded while more events than this wait for the read models.
    health_lag_bound: int = 10_000
    # Days the read audit trail (access_log) is kept; 等保 2.0 asks for at least six months.
    access_log_days: int = 180
    # Other systems this one escalates to or answers: system id -> its topic prefix (same broker).
    federation: dict[str, str] = field(default_factory=dict)
    # The API key each of those systems issued this one, to sign the commands sent to it.
    federation_keys: dict[str, str] = field(default_factory=dict)
    # A worker serves its Prometheus metrics on this port when set (the API serves GET /metrics).
    metrics_port: int | None = None
    # The master key that wraps each data subject's key (docs/personal-data.md); required by every
    # process that stores or reads cases.
    master_key_file: str | None = None
    # Days after the last of a contact's cases closed before its personal data is erased (0: never).
    personal_data_days: int = 1095
    # How often a worker looks for personal data past its retention, in seconds.
    retention_interval: float = 3600.0
    # TLS and SASL for every Kafka client (suqiu.base.kafka_security).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # 智能分拨 auto-dispatch: category -> the score from which the first suggestion is dispatched
    # by the system (docs/routing.md); empty, the default, never dispatches.
    auto_dispatch: dict[str, float] = field(default_factory=dict)
    # Days after which a worker trains the routing model again (0: only `suqiu classify train`).
    routing_retrain_days: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            kafka_bootstrap=env.get("SUQIU_KAFKA_BOOTSTRAP") or None,
            database_url=env.get("SUQIU_DATABASE_URL") or None,
            system_id=env.get("SUQIU_SYSTEM_ID") or "tj-binhai",
            http_host=env.get("SUQIU_HTTP_HOST") or "127.0.0.1",
            http_port=int(env.get("SUQIU_HTTP_PORT") or DEFAULT_HTTP_PORT),
            sla_policy=env.get("SUQIU_SLA_POLICY") or None,
            topic_prefix=env.get("SUQIU_TOPIC_PREFIX") or "",
            partitions=int(env.get("SUQIU_PARTITIONS") or 6),
            timer_interval=float(env.get("SUQIU_TIMER_INTERVAL") or 0.5),
            projector_batch=int(env.get("SUQIU_PROJECTOR_BATCH") or 2000),
            projector_processes=int(env.get("SUQIU_PROJECTOR_PROCESSES") or 1),
            health_lag_bound=int(env.get("SUQIU_HEALTH_LAG_BOUND") or 10_000),
            access_log_days=int(env.get("SUQIU_ACCESS_LOG_DAYS") or 180),
            federation=dict(pair.split("=", 1) for pair in (env.get("SUQIU_FEDERATION") or "").split(",")
                            if "=" in pair),
            federation_keys=dict(pair.split("=", 1) for pair in (env.get("SUQIU_FEDERATION_KEYS") or "").split(",")
                                 if "=" in pair),
            metrics_port=int(env["SUQIU_METRICS_PORT"]) if env.get("SUQIU_METRICS_PORT") else None,
            master_key_file=env.get("SUQIU_MASTER_KEY_FILE") or None,
            personal_data_days=int(env.get("SUQIU_PERSONAL_DATA_DAYS") or 1095),
            retention_interval=float(env.get("SUQIU_RETENTION_INTERVAL") or 3600.0),
            kafka_security=KafkaSecurity.from_env(env),
            auto_dispatch=_scores(env.get("SUQIU_AUTO_DISPATCH") or ""),
            routing_retrain_days=float(env.get("SUQIU_ROUTING_RETRAIN_DAYS") or 0),
            jurisdiction_feeds=tuple(j.strip() for j in (env.get("SUQIU_JURISDICTION_FEEDS") or "").split(",")
                                     if j.strip()),
        )

    def to_env(self) -> dict[str, str]:
        env = {
            "SUQIU_SYSTEM_ID": self.system_id,
            "SUQIU_HTTP_HOST": self.http_host,
            "SUQIU_HTTP_PORT": str(self.http_port),
            "SUQIU_TOPIC_PREFIX": self.topic_prefix,
            "SUQIU_PARTITIONS": str(self.partitions),
            "SUQIU_TIMER_INTERVAL": str(self.timer_interval),
            "SUQIU_PROJECTOR_BATCH": str(self.projector_batch),
            "SUQIU_PROJECTOR_PROCESSES": str(self.projector_processes),
            "SUQIU_HEALTH_LAG_BOUND": str(self.health_lag_bound),
            "SUQIU_ACCESS_LOG_DAYS": str(self.access_log_days),
            "SUQIU_PERSONAL_DATA_DAYS": str(self.personal_data_days),
            "SUQIU_RETENTION_INTERVAL": str(self.retention_interval),
            "SUQIU_JURISDICTION_FEEDS": ",".join(self.jurisdiction_feeds),
            "SUQIU_FEDERATION": ",".join(f"{k}={v}" for k, v in self.federation.items()),
            "SUQIU_FEDERATION_KEYS": ",".join(f"{k}={v}" for k, v in self.federation_keys.items()),
            "SUQIU_AUTO_DISPATCH": ",".join(f"{k}={v}" for k, v in self.auto_dispatch.items()),
            "SUQIU_ROUTING_RETRAIN_DAYS": str(self.routing_retrain_days),
            **self.kafka_security.to_env(),
        }
        for key, value in (("SUQIU_KAFKA_BOOTSTRAP", self.kafka_bootstrap), ("SUQIU_DATABASE_URL", self.database_url),
                           ("SUQIU_SLA_POLICY", self.sla_policy), ("SUQIU_MASTER_KEY_FILE", self.master_key_file)):
            if value:
                env[key] = value
        return env

    def beside_embedded(self, endpoints: Path = EMBEDDED_ENDPOINTS) -> Settings:
        """The broker and database of the `suqiu up` that wrote `endpoints`, when the environment
        names neither: a command run in the directory of the embedded stack reaches that stack.
        The environment always wins, and half of it is not completed from the file."""
        if self.kafka_bootstrap or self.database_url or not endpoints.is_file():
            return self
        try:
            found = json.loads(endpoints.read_text("utf-8"))
            kafka, database = found["kafka_bootstrap"], found["database_url"]
            if not (isinstance(kafka, str) and isinstance(database, str)):
                raise ValueError("kafka_bootstrap and database_url must be text")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{endpoints}: not the endpoints file `suqiu up` writes ({exc!r}); "
                             "set SUQIU_DATABASE_URL and SUQIU_KAFKA_BOOTSTRAP instead") from None
        key = found.get("master_key_file")
        return replace(self, kafka_bootstrap=kafka, database_url=database,
                       master_key_file=self.master_key_file or (key if isinstance(key, str) else None))

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def require(self) -> Settings:
        missing = [n for n, v in (("SUQIU_KAFKA_BOOTSTRAP", self.kafka_bootstrap),
                                  ("SUQIU_DATABASE_URL", self.database_url)) if not v]
        if missing:
            raise SystemExit(f"set {' and '.join(missing)} (or use `suqiu up` for the embedded stack)")
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def events_topic(self) -> str:
        return self.topic("appeals.events.v1")

    @property
    def commands_topic(self) -> str:
        return self.topic("appeals.commands.v1")

    @property
    def results_topic(self) -> str:
        return self.topic("appeals.command-results.v1")

    @property
    def dlq_topic(self) -> str:
        return self.topic("appeals.dlq.v1")


def _scores(text: str) -> dict[str, float]:
    """`approval=0.9,tax=0.85` as {category: score}; a score outside 0..1 is refused by name."""
    out = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        category, _, score = pair.partition("=")
        try:
            value = float(score)
        except ValueError:
            value = -1.0
        if not category or not 0 < value <= 1:
            raise ValueError(f"SUQIU_AUTO_DISPATCH: {pair!r} is not category=score with a score in (0, 1]")
        out[category.strip()] = value
    return out
