"""Imported history: no alarms for cycles that ended years ago, and figures by period that add up."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.cli.importer import MappingError, Outcome, create_rows, import_rows, load_mapping, read_rows
from suqiu.service.runtime import Runtime
from tests.conftest import Api, run_cli
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, cst, eventually, query

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "import"
HEADER = ["工单编号", "来电时间", "统一社会信用代码", "企业名称", "诉求类型", "所属区域", "诉求标题", "诉求内容",
          "承办单位", "答复时间", "答复内容", "办结时间", "办结结果"]
DEPARTMENTS = {"滨海新区行政审批局": "bh-approval", "滨海新区人力资源和社会保障局": "bh-hrss"}
OUTCOMES = {"已解决": "resolved", "解释说明": "explained"}


def history(n: int, seed: int = 11) -> list[list[str]]:
    """`n` messages over 2023-2025 to two Binhai bureaus: most replied and closed, some only
    replied, some never answered; replies within 1 to 12 days, so some are late."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = datetime(2023, 1, 3, 9) + timedelta(days=rng.randrange(3 * 365), minutes=rng.randrange(7 * 60))
        dept = rng.choice(list(DEPARTMENTS))
        fate = rng.random()
        replied = at + timedelta(days=rng.randint(1, 12), hours=rng.randint(0, 5)) if fate < 0.9 else None
        closed = replied + timedelta(days=1) if replied and fate < 0.75 else None
        outcome = rng.choice(list(OUTCOMES)) if closed else ""
        stamp = "%Y-%m-%d %H:%M:%S"
        out.append([f"H-{i:05d}", at.strftime(stamp), "91110000600037341L", f"天津第{i}科技有限公司", "行政审批",
                    "滨海新区", "审批进度", "咨询审批进度", dept, replied.strftime(stamp) if replied else "",
                    "已答复" if replied else "", closed.strftime(stamp) if closed else "", outcome])
    return out


def write(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf).writerows([HEADER, *rows])
    path.write_bytes(buf.getvalue().encode("gb18030"))


async def import_file(runtime: Runtime, settings: Settings, data: Path, mapping: Path) -> Outcome:
    """The importer as `suqiu import` runs it with one worker, on the runtime's (manual) clock."""
    out, rows, lines = read_rows(data, load_mapping(mapping), settings.system_id)
    return await import_rows(functools.partial(create_rows, runtime.service.run), out, rows, lines)


SLA_EVENTS = "('SlaWarning', 'SlaBreached', 'SupervisionOpened')"


async def test_imported_history_raises_no_alarm_and_its_figures_add_up_by_period(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock, tmp_path: Path) -> None:
    clock.set(cst(2026, 3, 2, 10, 0))
    imported_at = clock.now()
    s = topics.with_(timer_interval=0.05)
    rows = history(240)
    data = tmp_path / "history.csv"
    write(data, rows)
    out = await import_file(runtime, s, data, EXAMPLES / "12345.toml")
    assert (out.imported, out.rejected) == (240, []), out.rejected[:3]
    open_rows = [r for r in rows if not r[11]]
    assert out.open == len(open_rows) and "open_cases = live" in out.open_cases(load_mapping(EXAMPLES / "12345.toml"))

    async with faust_worker(s, clock):
        cases = [r[0] for r in query(s, "SELECT DISTINCT case_id FROM events")]
        for case in cases:
            await caught_up(s, case)
        # Several timer ticks over a read model holding every case: nothing fires, nothing is due.
        due = await eventually(lambda: query(s, "SELECT count(*) FROM sla_timers WHERE fire_at <= %s", imported_at),
                               lambda v: v[0][0] == 0)
        assert due[0][0] == 0
    alarms = query(s, f"SELECT event_type, occurred_at, data FROM events WHERE event_type IN {SLA_EVENTS}")
    # Only the breaches of replies that came late, back-dated to their deadlines, years ago.
    assert alarms and {a[0] for a in alarms} == {"SlaBreached"}
    assert all(a[1] < datetime(2026, 1, 1, tzinfo=imported_at.tzinfo) for a in alarms)
    # The replied-but-open cases owe their follow-up from the import; the unanswered ones are
    # dispatched at the import, with fresh deadlines.
    timers = query(s, "SELECT min(fire_at), count(DISTINCT case_id) FROM sla_timers")
    assert timers[0][0] > imported_at and timers[0][1] == len(open_rows)

    # Figures: the all-time counts equal the sum of the years and of the months, and each year's
    # replies and closures equal a count made from the CSV itself.
    status, all_time = await api.call("auditor", "GET", "/jurisdictions/tj-binhai/kpis")
    assert status == 200, all_time
    status, years = await api.call("auditor", "GET", "/jurisdictions/tj-binhai/kpis?from=2023-01-01&to=2026-01-01&by=year")
    assert status == 200 and [p["period"] for p in years["periods"]] == ["2023", "2024", "2025"], years
    status, months = await api.call("auditor", "GET",
                                    "/jurisdictions/tj-binhai/kpis?from=2023-01-01&to=2026-01-01&by=month")
    assert len(months["periods"]) == 36 and months["periods"][0]["period"] == "2023-01"
    for key in ("assigned", "replied", "replied_on_time", "closed", "resolved", "handled"):
        unanswered = sum(1 for r in rows if not r[9])  # dispatched at the import, in 2026
        expected = all_time["counts"][key] - (unanswered if key == "assigned" else 0)
        assert sum(p["counts"][key] for p in years["periods"]) == expected, key
        assert sum(p["counts"][key] for p in months["periods"]) == expected, key
    for year in years["periods"]:
        y = year["period"]
        assert year["counts"]["replied"] == sum(1 for r in rows if r[9].startswith(y))
        assert year["counts"]["closed"] == sum(1 for r in rows if r[11].startswith(y))
        assert year["counts"]["resolved"] == sum(1 for r in rows if r[11].startswith(y) and r[12] == "已解决")
    # Replies not yet closed count: more replies than closures, and a handling time for them.
    assert all_time["counts"]["replied"] == sum(1 for r in rows if r[9]) > all_time["counts"]["closed"]
    assert all_time["handling_working_hours"]["median"] is not None
    assert all_time["on_time_rate"] == round(all_time["counts"]["replied_on_time"] / all_time["counts"]["replied"], 4)

    status, ranking = await api.call("auditor", "GET",
                                     "/jurisdictions/tj-binhai/ranking?from=2024-01-01&to=2025-01-01&by=on_time_rate")
    assert status == 200, ranking
    ranked = [e for e in ranking["ranking"] if e["rank"] is not None]
    assert [e["department"] for e in ranked] == sorted(
        ("bh-approval", "bh-hrss"), key=lambda d: -next(e["on_time_rate"] for e in ranked if e["department"] == d))
    assert ranked[0]["rank"] == 1 and ranked[0]["name"]
    assert all(e["rank"] is None for e in ranking["ranking"] if e["counts"]["replied"] == 0)
    status, dept = await api.call("auditor", "GET", "/departments/bh-approval/load?from=2024-01-01&to=2025-01-01")
    per_dept = Counter(DEPARTMENTS[r[8]] for r in rows if r[9].startswith("2024"))
    assert status == 200 and dept["counts"]["replied"] == per_dept["bh-approval"]
    assert dept["period"] == {"from": "2024-01-01", "to": "2025-01-01"}

    for bad, field in (("from=2026-13-01", "from"), ("from=2026-02-01&to=2026-01-01", "to"), ("by=week", "by"),
                       ("sort=x", "sort"), ("from=1900-01-01", "from")):
        status, err = await api.call("auditor", "GET", f"/jurisdictions/tj-binhai/kpis?{bad}")
        assert status == 400 and err["error"]["details"]["field"] == field, (bad, err)
    status, err = await api.call("auditor", "GET", "/jurisdictions/tj-binhai/ranking?by=open")
    assert status == 400 and err["error"]["details"]["field"] == "by" and "on_time_rate" in err["error"]["details"]["allowed"]


async def test_open_history_closed_as_the_mapping_says_and_a_us_export_reads(
        topics: Settings, runtime: Runtime, clock: ManualClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set(cst(2026, 3, 2, 10, 0))
    out = await import_file(runtime, topics, EXAMPLES / "nyc311-sample.csv", EXAMPLES / "nyc311.toml")
    assert (out.imported, out.rejected, out.open) == (4, [], 2), out.rejected
    ends = dict(query(topics, "SELECT e.case_id, max(e.event_type) FILTER (WHERE e.seq = (SELECT max(seq) FROM events "
                              "WHERE case_id = e.case_id)) FROM events e GROUP BY 1"))
    assert set(ends.values()) == {"AppealClosed"}  # all four closed: two in the export, two as close_as says
    notes = query(topics, "SELECT count(*) FROM events WHERE event_type = 'AppealClosed'")
    assert notes[0][0] == 4
    submitted = query(topics, "SELECT min(occurred_at) FROM events WHERE event_type = 'AppealSubmitted'")[0][0]
    assert submitted.isoformat() == "2013-12-26T03:58:19+00:00"  # 10:58:19 PM Eastern, read by date_formats

    # The CLI on the Chinese example: a clean run replaces an old rejects file and names the choice.
    assert topics.database_url
    monkeypatch.setenv("SUQIU_DATABASE_URL", topics.database_url)
    stale = tmp_path / "sample.csv.rejects.csv"
    (tmp_path / "sample.csv").write_bytes((EXAMPLES / "12345-sample.csv").read_bytes())
    stale.write_text("row,reason\n9,old\n", "utf-8")
    code = await asyncio.to_thread(run_cli, ["import", str(tmp_path / "sample.csv"), "--mapping",
                                             str(EXAMPLES / "12345.toml")])
    text = capsys.readouterr().out
    assert code == 0 and "4 imported" in text and "2 of the cases imported now were open in the file" in text \
        and "open_cases = live" in text, text
    assert not stale.exists()
    # Run where `suqiu up` wrote its endpoints, with nothing in the environment: that stack's store.
    monkeypatch.delenv("SUQIU_DATABASE_URL")
    monkeypatch.delenv("SUQIU_KAFKA_BOOTSTRAP", raising=False)
    (tmp_path / ".suqiu").mkdir()
    (tmp_path / ".suqiu" / "endpoints.json").write_text(json.dumps(
        {"database_url": topics.database_url, "kafka_bootstrap": topics.kafka_bootstrap}), "utf-8")
    monkeypatch.chdir(tmp_path)
    code = await asyncio.to_thread(run_cli, ["import", "sample.csv", "--mapping", str(EXAMPLES / "12345.toml")])
    text = capsys.readouterr().out
    assert code == 0 and "0 imported, 4 already imported" in text, text
    assert "none was left open by the file" in text and "closed as" not in text, text
    # Rejects that could not be written would be rows lost: refused before anything is stored.
    events = query(topics, "SELECT count(*) FROM events")
    fresh = tmp_path / "fresh.csv"  # rows not imported yet: their keys are new
    fresh.write_text((EXAMPLES / "nyc311-sample.csv").read_text("utf-8").replace("\n2729", "\n9729"), "utf-8")
    code = await asyncio.to_thread(run_cli, ["import", str(fresh), "--mapping", str(EXAMPLES / "nyc311.toml"),
                                             "--rejects", "no-such-dir/r.csv"])
    assert code == 2 and "--rejects: cannot write no-such-dir/r.csv" in capsys.readouterr().err
    assert query(topics, "SELECT count(*) FROM events") == events

    # Refusals a new user can act on: the accepted date formats, the allowed values.
    mapping = tmp_path / "us.toml"
    mapping.write_text((EXAMPLES / "nyc311.toml").read_text("utf-8").replace('"*" = "other"\n', "")
                       .replace('"Street Condition" = "infrastructure"', '"Street Condition" = "streets"'), "utf-8")
    bad = tmp_path / "bad.csv"
    lines = (EXAMPLES / "nyc311-sample.csv").read_text("utf-8").splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace("12/25/2013 11:59:08 PM", "2013.12.25 23:59"),
                              lines[2].replace("27296632", "27296699")]) + "\n", "utf-8")
    refused = await import_file(runtime, topics, bad, mapping)
    reasons = {line: reason for line, reason, _ in refused.rejected}
    assert "%m/%d/%Y %I:%M:%S %p" in reasons[2] and "date_formats" in reasons[2], reasons
    assert reasons[3].startswith("Complaint Type: unknown category 'streets'") and "infrastructure" in reasons[3], reasons
    assert "[values.category]" in reasons[3]

    # A field past the csv module's 128 KiB limit fails its row by the field's own rule, not the file.
    huge = tmp_path / "huge.csv"
    resolution = lines[0].split(",").index("Resolution Description")
    long_row = lines[3].split(",")
    long_row[resolution] = "x" * 200_000
    huge.write_text("\n".join([lines[0], ",".join(long_row).replace(long_row[0], "97000001", 1),
                               lines[4].replace(lines[4].split(",")[0], "97000002", 1)]) + "\n", "utf-8")
    limit = csv.field_size_limit()
    out = await import_file(runtime, topics, huge, EXAMPLES / "nyc311.toml")
    assert (out.imported, [(line, reason) for line, reason, _ in out.rejected]) == (
        1, [(2, "Resolution Description: longer than 20000 characters")]), out.rejected
    assert csv.field_size_limit() == limit  # the process's limit is left as it was

    # A quote never closed would read every later line into one field: the file is refused, naming
    # the row. A closed quote spanning lines, as exports write multi-line replies, is one field.
    multi = lines[4].replace("27296634", "97000003").replace(lines[4].split(",")[resolution], '"first line\nsecond"')
    spans = tmp_path / "spans.csv"
    spans.write_text("\n".join([lines[0], lines[2].replace("27296632", "97000004"), multi]) + "\n", "utf-8")
    read, _, rows_read = read_rows(spans, load_mapping(EXAMPLES / "nyc311.toml"), topics.system_id)
    assert read.rows == 2 and "first line\nsecond" in rows_read[-1][1][resolution]
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text("\n".join([lines[0], lines[2].replace("Pothole", '"Pothole'), lines[3], lines[4]]) + "\n",
                        "utf-8")
    with pytest.raises(MappingError, match="row 2: a quote opened on line 2 is never closed"):
        read_rows(unclosed, load_mapping(EXAMPLES / "nyc311.toml"), topics.system_id)
