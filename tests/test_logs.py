"""Logs for people: library warnings rate-limited with a count, one renderer for every line."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from suqiu.base.logs import REPEAT_SECONDS, Repeats, faust_logging, library_handler


class Ticks:
    """A monotonic clock the test moves (the filter's interval is real time, not business time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    monkeypatch.setenv("SUQIU_LOG_FORMAT", "json")
    return io.StringIO()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_burst_of_broker_errors_is_one_line_per_interval_with_the_count_held_back(stream: io.StringIO) -> None:
    handler = library_handler(stream)
    ticks = Ticks()
    handler.filters[:] = [Repeats(clock=ticks)]
    log = logging.getLogger("aiokafka.conn.test-burst")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(547):  # a 5 s outage in the trial: every client, every retry
            log.error('Unable connect to "%s": %s', f"127.0.0.1:{9092 + i % 3}", "[Errno 111] Connect call failed")
        log.warning("Heartbeat failed for group %s", "suqiu")  # another kind goes through at once
        assert [line["event"] for line in _lines(stream)] == [
            'Unable connect to "127.0.0.1:9092": [Errno 111] Connect call failed', "Heartbeat failed for group suqiu"]
        ticks.now += REPEAT_SECONDS + 1
        log.error('Unable connect to "%s": %s', "127.0.0.1:9092", "[Errno 111] Connect call failed")
        last = _lines(stream)[-1]
        assert last["repeated"] == 546 and last["repeated_within_s"] == REPEAT_SECONDS
        assert last["level"] == "error" and last["logger"] == "aiokafka.conn.test-burst"
        log.info("INFO is never held back: %s", 1)
        assert _lines(stream)[-1]["event"] == "INFO is never held back: 1"
    finally:
        log.removeHandler(handler)


def test_our_own_warnings_are_never_held_back(stream: io.StringIO) -> None:
    handler = library_handler(stream)
    log = logging.getLogger("suqiu.test-own")
    log.addHandler(handler)
    log.propagate = False
    try:
        for _ in range(3):
            log.warning("sla timer tick failed")
        assert len(_lines(stream)) == 3
    finally:
        log.removeHandler(handler)


def test_the_worker_logging_config_puts_faust_lines_through_our_handler(monkeypatch: pytest.MonkeyPatch,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUQIU_LOG_FORMAT", "json")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(faust_logging())
        assert [type(f) for h in root.handlers for f in h.filters] == [Repeats]
        faust_log = logging.getLogger("faust.transport.drivers.aiokafka")
        # What Faust's livelock check logs for a quiet partition assigned after a stall: not an alarm.
        faust_log.error("[^--AIOKafkaConsumerThread]: Aiokafka has not sent fetch request for %r since start "
                        "(started %s)", "TP(topic='appeals.events.v1', partition=3)", "7.01 minutes ago")
        faust_log.warning("Heartbeat failed: %s", "local member_id is not known")
        for h in root.handlers:
            h.flush()
        lines = [json.loads(line) for line in capfd.readouterr().err.strip().splitlines()]
        assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
            ("faust.transport.drivers.aiokafka", "warning", "Heartbeat failed: local member_id is not known")]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
