"""Shared set-up for benchmarks: a fresh embedded stack in a temporary directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from suqiu.base.config import Settings
from suqiu.base.processes import die_with_parent
from suqiu.base.sealing import MasterKey
from suqiu.stack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from suqiu.stack.up import issue_keys, wait_for_http
from suqiu.store import reference
from suqiu.store.migrate import migrate
from suqiu.streams.topics import ensure_topics


@dataclass
class BenchStack:
    settings: Settings
    keys: dict[str, dict[str, object]]
    postgres: EmbeddedPostgres
    broker: EmbeddedBroker
    tmp: Path  # PostgreSQL's data and the benchmark's own files; removed by stop()
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.settings.to_env()}
        proc = subprocess.Popen([sys.executable, "-m", "suqiu", "--log-level", "WARNING", *args], env=env,
                                preexec_fn=die_with_parent)
        self.children.append(proc)
        return proc

    def wait_http(self) -> None:
        wait_for_http(f"http://127.0.0.1:{self.settings.http_port}", self.children)

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
            child.wait(20)
        self.broker.stop()
        self.postgres.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_stack(partitions: int = 6) -> BenchStack:
    tmp = Path(tempfile.mkdtemp(prefix="suqiu-bench-"))
    pg = EmbeddedPostgres(tmp / "pg", durable=True)
    broker = EmbeddedBroker()
    MasterKey.write_new(tmp / "master.key")
    s = Settings(database_url=pg.start(), kafka_bootstrap=broker.start(), http_port=free_port(), partitions=partitions,
                 master_key_file=str(tmp / "master.key"))
    assert s.database_url
    migrate(s.database_url)
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        reference.seed(conn)
    asyncio.run(ensure_topics(s))
    return BenchStack(s, issue_keys(s.database_url, s.system_id), pg, broker, tmp)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """A process and its children (a worker's projector processes, PostgreSQL's backends)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return [pid, *children]


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of `pids`, with what their exited children used (so a closed connection still counts)."""
    return sum(sum(int(x) for x in f[11:15]) for f in map(_stat, pids)) / os.sysconf("SC_CLK_TCK")


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


@dataclass
class CpuMeter:
    """CPU used by named process families between `start` and `per`, in µs per unit of work."""

    roots: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = {name: cpu_seconds(family(pid)) for name, pid in self.roots.items()}

    def per(self, units: int) -> dict[str, float]:
        return {name: (cpu_seconds(family(pid)) - self._start[name]) / units * 1e6
                for name, pid in self.roots.items()}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(latencies_ms: list[float]) -> str:
    return (f"p50 {pct(latencies_ms, 50):.1f} ms, p99 {pct(latencies_ms, 99):.1f} ms, "
            f"mean {statistics.fmean(latencies_ms):.1f} ms")
