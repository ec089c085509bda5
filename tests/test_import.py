"""History import: a GB18030 CSV with Chinese headers, good rows in, bad rows to the rejects file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench import importer as bench_importer
from suqiu.base.config import Settings
from suqiu.domain.commands import parse_command
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest, _request_hash
from suqiu.service.runtime import Runtime
from suqiu.store.binary import jsonb_bytes, uuid_bytes
from tests.conftest import count_rows, run_cli
from tests.support.kafka import faust_worker
from tests.support.procs import descendants, processes
from tests.support.sla import caught_up, eventually, query

HEADER = ["工单编号", "受理时间", "统一社会信用代码", "企业名称", "来源渠道", "诉求类别", "所属区域", "诉求标题",
          "诉求内容", "承办单位", "答复时间", "答复内容", "办结时间", "办结结果"]
GOOD = "91110000600037341L"
ROWS = [
    # 2: replied within 5 working days, closed, resolved
    ["H-001", "2025-03-03 09:30", GOOD, "天津某某科技有限公司", "12345热线", "行政审批", "tj-binhai", "施工许可进度",
     "希望了解审批进度", "滨海新区行政审批局", "2025-03-05 16:00", "已加快办理", "2025-03-06 10:00", "已解决"],
    # 3: replied after the 5-day deadline (Mon 3 Mar 9:30 -> Mon 10 Mar 9:30): a retroactive breach
    ["H-002", "2025/3/3 9:30", GOOD, "天津滨海新材料有限公司", "网站", "人才劳动", "tj-teda", "人才落户",
     "落户政策咨询", "滨海新区人力资源和社会保障局", "2025/3/12 11:00", "已答复", "2025/3/13 09:00", "解释说明"],
    # 4: still open at the time of the export
    ["H-003", "2025年3月4日 10:00", GOOD, "天津自贸区物流有限公司", "12345热线", "行政审批", "tj-ftz", "通关",
     "通关效率", "滨海新区行政审批局", "", "", "", ""],
    # 5: an Excel serial number for a date
    ["H-004", "45720.5", GOOD, "某公司", "12345热线", "行政审批", "tj-binhai", "标题", "内容", "", "", "", "", ""],
    # 6: a reply before the submission
    ["H-005", "2025-03-05 10:00", GOOD, "某公司", "12345热线", "行政审批", "tj-binhai", "标题", "内容",
     "滨海新区行政审批局", "2025-03-04 10:00", "答复", "", ""],
    # 7: a required field missing
    ["H-006", "2025-03-05 10:00", GOOD, "某公司", "12345热线", "行政审批", "tj-binhai", "", "内容", "", "", "", "",
     ""],
    # 8: an invalid unified social credit code
    ["H-007", "2025-03-05 10:00", "91110000600037341X", "某公司", "12345热线", "行政审批", "tj-binhai", "标题",
     "内容", "", "", "", "", ""],
    # 9: handled in a year no calendar describes (chinesecalendar starts in 2004): no deadline can be placed
    ["H-008", "2003-06-02 10:00", GOOD, "某公司", "12345热线", "行政审批", "tj-binhai", "标题", "内容",
     "滨海新区行政审批局", "2003-06-03 10:00", "答复", "2003-06-04 10:00", "已解决"],
]
MAPPING = """
source_system = "tj-12345-legacy"
encoding = "gb18030"
[columns]
source_ref = "工单编号"
submitted_at = "受理时间"
uscc = "统一社会信用代码"
enterprise_name = "企业名称"
channel = "来源渠道"
category = "诉求类别"
jurisdiction = "所属区域"
title = "诉求标题"
content = "诉求内容"
department = "承办单位"
replied_at = "答复时间"
reply = "答复内容"
closed_at = "办结时间"
outcome = "办结结果"
[values.channel]
"12345热线" = "hotline"
"网站" = "web"
[values.category]
"行政审批" = "approval"
"人才劳动" = "labor"
[values.department]
"滨海新区行政审批局" = "bh-approval"
"滨海新区人力资源和社会保障局" = "bh-hrss"
[values.outcome]
"已解决" = "resolved"
"解释说明" = "explained"
"""


def write_csv(path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER)
    w.writerows(ROWS)
    path.write_bytes(buf.getvalue().encode("gb18030"))


async def test_import_good_rows_reject_bad_ones_and_twice_adds_nothing(
        topics: Settings, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    s = topics.with_(timer_interval=0.05)
    assert s.database_url
    monkeypatch.setenv("SUQIU_DATABASE_URL", s.database_url)
    data, mapping = tmp_path / "history.csv", tmp_path / "map.toml"
    write_csv(data)
    mapping.write_text(MAPPING, "utf-8")
    code = await asyncio.to_thread(run_cli, ["import", str(data), "--mapping", str(mapping)])
    out, err = capsys.readouterr()
    assert code == 1 and "8 rows" in out and "3 imported, 0 already imported, 5 rejected" in out, out
    # At INFO the import is one line per batch, not one per case or event.
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    batches = [line for line in lines if line["event"] == "cases created in bulk"]
    assert len(batches) == 1 and batches[0]["outcomes"]["created"] == 3, batches
    assert sum(batches[0]["outcomes"].values()) == batches[0]["size"]
    assert not [line for line in lines if line["event"] == "command stored"]
    rejects = list(csv.reader((tmp_path / "history.csv.rejects.csv").read_text("utf-8-sig").splitlines()))
    assert rejects[0][:3] == ["row", "reason", "工单编号"]
    reasons = {int(r[0]): r[1] for r in rejects[1:]}
    assert sorted(reasons) == [5, 6, 7, 8, 9]
    assert "Excel serial number" in reasons[5]
    assert "before the submission" in reasons[6]
    assert reasons[7].startswith("诉求标题: required")
    assert reasons[8].startswith("统一社会信用代码: ") and "check" in reasons[8], reasons[8]
    assert "no working-day calendar for 2003" in reasons[9], reasons[9]

    codec = Codec()
    events = [(r[0], r[1], codec.decode_event(bytes(r[2])))
              for r in query(s, "SELECT case_id, seq, data FROM events ORDER BY case_id, seq")]
    by_ref: dict[str, list[str]] = {}
    for case_id, _, ev in events:
        if ev.event_type == "AppealSubmitted":
            by_ref[ev.payload.source_ref] = [case_id]
            assert ev.payload.title in ("施工许可进度", "人才落户", "通关")  # Chinese text intact
            assert ev.actor.person == "history-import" and (ev.correlation_id or "").startswith("import:")
    types = {ref: [ev.event_type for c, _, ev in events if c == ids[0]] for ref, ids in by_ref.items()}
    assert types["H-001"] == ["AppealSubmitted", "AppealDispatched", "AppealAccepted", "AppealReplied", "AppealClosed"]
    assert types["H-002"] == ["AppealSubmitted", "AppealDispatched", "AppealAccepted", "SlaBreached",
                              "AppealReplied", "AppealClosed"]
    assert types["H-003"] == ["AppealSubmitted", "AppealDispatched"]
    closed = next(ev for c, _, ev in events if c == by_ref["H-001"][0] and ev.event_type == "AppealClosed")
    assert closed.occurred_at.isoformat() == "2025-03-06T02:00:00+00:00"  # the original time, in UTC

    # Again, through worker processes (the path large files take): nothing new, the same rejects.
    before = query(s, "SELECT count(*) FROM events")[0][0]
    (tmp_path / "history.csv.rejects.csv").unlink()
    code = await asyncio.to_thread(run_cli, ["import", str(data), "--mapping", str(mapping), "--workers", "2"])
    assert "2 workers): 0 imported, 3 already imported, 5 rejected" in capsys.readouterr().out
    assert query(s, "SELECT count(*) FROM events")[0][0] == before
    again = list(csv.reader((tmp_path / "history.csv.rejects.csv").read_text("utf-8-sig").splitlines()))
    assert {int(r[0]): r[1] for r in again[1:]} == reasons  # a refusal decided in a worker keeps its field

    # The case still open runs on fresh clocks from the import: a live worker raises nothing for it
    # until they fall due; the closed historical ones get nothing new.
    open_case = by_ref["H-003"][0]
    dispatched = next(ev for c, _, ev in events if c == open_case and ev.event_type == "AppealDispatched")
    imported_at = dispatched.recorded_at  # the import's own clock: dispatched then, not in March 2025
    assert dispatched.occurred_at == imported_at and dispatched.payload.accept_due > imported_at
    async with faust_worker(s, runtime.clock):
        for ref in ("H-001", "H-002", "H-003"):
            await caught_up(s, by_ref[ref][0])
        timers = await eventually(lambda: query(s, "SELECT fire_at FROM sla_timers WHERE case_id = %s", open_case),
                                  lambda rows: len(rows) >= 2)
        assert min(r[0] for r in timers) > imported_at, timers  # due after the import, not in 2025
    sla = dict(query(s, "SELECT case_id, count(*) FROM events WHERE event_type LIKE 'Sla%%' "
                        "OR event_type = 'SupervisionOpened' GROUP BY 1"))
    assert sla.get(by_ref["H-001"][0], 0) == 0 and sla[by_ref["H-002"][0]] == 1  # only the retroactive breach
    assert sla.get(open_case, 0) == 0


async def test_import_of_a_missing_file_is_a_clear_error(
        topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert topics.database_url
    monkeypatch.setenv("SUQIU_DATABASE_URL", topics.database_url)
    mapping = tmp_path / "map.toml"
    mapping.write_text(MAPPING, "utf-8")
    before = query(topics, "SELECT count(*) FROM events")[0][0]
    code = await asyncio.to_thread(run_cli, ["import", str(tmp_path / "absent.csv"), "--mapping", str(mapping)])
    assert code == 2 and "absent.csv" in capsys.readouterr().err
    assert query(topics, "SELECT count(*) FROM events")[0][0] == before


def test_the_request_hash_of_a_command_never_changes() -> None:
    """Stored request hashes decide whether a re-sent command or a re-run import is a repeat.

    The value was computed when the canonical form was fixed; if this fails, every command
    stored before would be refused as an idempotency mismatch when sent again.
    """
    req = CommandRequest("import_case", "c-1", Actor("tj-binhai", Role.SYSTEM, person="history-import"), {
        "enterprise": {"uscc": "91110000600037341L", "name": "天津某某科技有限公司"}, "channel": "hotline",
        "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai", "title": "施工许可",
        "content": "进度", "source_system": "old", "source_ref": "A-1", "submitted_at": "2025-03-01T09:00:00+08:00",
        "department": "bh-market", "replied_at": "2025-03-03T10:00:00+08:00", "reply": "已办理",
        "closed_at": "2025-03-04T10:00:00+08:00", "outcome": "resolved"})
    digest = _request_hash(req, parse_command(req.type, req.body))
    assert digest.hex() == "4d50d22ac673466d091de11726663faf387da2cbafb8b5afebf0525316324813"


def test_binary_copy_values_are_what_postgresql_reads() -> None:
    u = uuid.uuid4()
    assert uuid_bytes(str(u)) == u.bytes and uuid_bytes(str(u).upper()) == u.bytes
    with pytest.raises(ValueError, match="not a UUID"):
        uuid_bytes(str(u)[:-2])
    assert jsonb_bytes('{"a": "中"}') == b'\x01{"a": "\xe4\xb8\xad"}'


async def test_a_killed_import_leaves_no_worker_behind_and_running_it_again_completes_it(
        settings: Settings, tmp_path: Path) -> None:
    """`suqiu import` as a user runs it, its workers forked from the CLI, SIGKILLed mid-way."""
    rows, chunk = 10_000, 500
    data, mapping = tmp_path / "many.csv", tmp_path / "map.toml"
    bench_importer.write_csv(data, rows)
    mapping.write_text(bench_importer.MAPPING, "utf-8")
    argv = [sys.executable, "-m", "suqiu", "--log-level", "WARNING", "import", str(data), "--mapping", str(mapping),
            "--workers", "2"]
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        committed = await eventually(lambda: count_rows(settings, "commands"), lambda n: n > 0)
        workers = descendants(proc.pid)
        table = processes()
        # Forked, so they start without importing Suqiu again: each runs the CLI's own command line.
        assert committed > 0 and [table[w][1] for w in workers] == [table[proc.pid][1]] * 2, (committed, workers)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert await eventually(lambda: workers & set(processes()), lambda left: not left, timeout=10) == set()
    done = count_rows(settings, "commands")
    # Each chunk is one transaction: whole cases, whole chunks, nothing half-imported.
    assert done % chunk == 0 and count_rows(settings, "events") == 5 * done and done < rows, done
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert f"{rows - done} imported, {done} already imported, 0 rejected" in again.stdout, again
    assert count_rows(settings, "commands") == rows and count_rows(settings, "events") == 5 * rows
