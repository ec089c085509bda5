"""The auditors' tool against the real store and broker: tampering, as-of, rebuild, restore, packages."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.cli.main import build_parser
from suqiu.domain.evolve import replay_state
from suqiu.domain.sla import CHINA
from suqiu.replay import cli as replay_cli
from suqiu.replay import history
from suqiu.replay.rebuild import rebuild
from suqiu.schemas.codec import HASH_SIZE, HEADER, Codec, chain_hash
from suqiu.service.runtime import Runtime
from suqiu.streams.topics import ensure_topics
from tests.conftest import Api
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, dispatched_into_2032, knowing_2027, query, replay, snapshot


async def lifecycle(api: Api) -> str:
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market", note="请核实")
    await api.ok("bh-market", case, "accept")
    await api.ok("bh-market", case, "request_materials", items=["营业执照"], note="请补充")
    await api.ok("enterprise", case, "supply_materials", note="已上传")
    await api.ok("bh-market", case, "reply", content="已办结，许可证已核发。")
    await api.ok("dispatcher", case, "close", outcome="resolved", note="企业确认")
    return case


def execute(settings: Settings, sql: str, *params: Any) -> None:
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql, params)


def rechain(settings: Settings, case_id: str) -> None:
    """What a tamperer with superuser rights does to hide an edit: recompute every hash after it."""
    rows = query(settings, "SELECT seq, data FROM events WHERE case_id = %s ORDER BY seq", case_id)
    prev = bytes(32)
    for seq, data in rows:
        data = bytes(data)
        body = data[HEADER:-HASH_SIZE]
        prev = chain_hash(prev, body)
        execute(settings, "UPDATE events SET data = %s, hash = %s WHERE case_id = %s AND seq = %s",
                data[:HEADER] + body + prev, prev, case_id, seq)


def edit_text(data: bytes, old: str, new: str) -> bytes:
    a, b = old.encode(), new.encode()
    assert len(a) == len(b) and a in data
    return data.replace(a, b, 1)


@pytest.mark.parametrize("tampering", ["edit", "delete", "insert", "swap"])
async def test_every_kind_of_tampering_is_named_by_case_and_seq(
        topics: Settings, runtime: Runtime, api: Api, tampering: str) -> None:
    s = topics
    clean = await lifecycle(api)
    case = await lifecycle(api)
    assert (await replay(s, "verify", "--all"))[0] == 0
    if tampering == "edit":
        data = bytes(query(s, "SELECT data FROM events WHERE case_id = %s AND seq = 6", case)[0][0])
        execute(s, "UPDATE events SET data = %s WHERE case_id = %s AND seq = 6",
                edit_text(data, "许可证已核发", "许可证未核发"), case)
        expected = f"case {case} seq 6: chain broken"
    elif tampering == "delete":
        execute(s, "DELETE FROM outbox")
        execute(s, "DELETE FROM events WHERE case_id = %s AND seq = 4", case)
        expected = f"case {case} seq 4: missing"
    elif tampering == "insert":
        # A forged urge slipped in after seq 2, the later events renumbered to make room.
        execute(s, "DELETE FROM outbox")
        execute(s, "UPDATE events SET seq = seq + 1000 WHERE case_id = %s AND seq >= 3", case)
        execute(s, "UPDATE events SET seq = seq - 999 WHERE case_id = %s AND seq > 1000", case)
        forged = bytes(query(s, "SELECT data FROM events WHERE case_id = %s AND seq = 2", case)[0][0])
        prev = bytes(query(s, "SELECT hash FROM events WHERE case_id = %s AND seq = 2", case)[0][0])
        body = forged[HEADER:-HASH_SIZE]
        h = chain_hash(prev, body)
        execute(s, "INSERT INTO events (case_id, seq, event_id, event_type, command_id, occurred_at, recorded_at, "
                   "data, hash) SELECT case_id, 3, %s, event_type, 'forged', occurred_at, recorded_at, %s, %s "
                   "FROM events WHERE case_id = %s AND seq = 2",
                str(uuid.uuid4()), forged[:HEADER] + body + h, h, case)
        expected = f"case {case} seq 4: chain broken"
    else:
        execute(s, "UPDATE events SET seq = 1003 WHERE case_id = %s AND seq = 3", case)
        execute(s, "UPDATE events SET seq = 3 WHERE case_id = %s AND seq = 4", case)
        execute(s, "UPDATE events SET seq = 4 WHERE case_id = %s AND seq = 1003", case)
        expected = f"case {case} seq 3: chain broken"
    code, out = await replay(s, "verify", "--all")
    assert code == 1, out
    assert expected in out, out
    assert clean not in out
    code, out = await replay(s, "verify", case)
    assert code == 1 and expected in out
    assert (await replay(s, "verify", clean))[0] == 0


async def test_as_of_equals_the_state_evolved_to_that_point(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    case = (await api.submit())["case_id"]
    for step in ("dispatch", "accept", "reply", "close"):
        clock.advance(timedelta(hours=1))
        fields: dict[str, Any] = {"dispatch": {"department": "bh-market"}, "accept": {},
                                  "reply": {"content": "好"}, "close": {"outcome": "resolved"}}[step]
        await api.ok("dispatcher" if step in ("dispatch", "close") else "bh-market", case, step, **fields)
    codec = Codec()
    assert topics.database_url
    with psycopg.connect(topics.database_url) as conn:
        stored = history.load(conn, codec, case)
    events = [x.event for x in stored]
    for k in range(1, len(events) + 1):
        expected = replay_state(case, events[:k])
        assert history.as_of(stored, seq=k) == expected
        assert history.as_of(stored, at=events[k - 1].recorded_at) == expected
        code, out = await replay(topics, "case", case, "--seq", str(k), "--format", "json")
        assert code == 0 and json.loads(out)["status"] == expected.status.value
    at = events[2].recorded_at.astimezone(CHINA)
    code, out = await replay(topics, "case", case, "--as-of", at.isoformat(), "--format", "json")
    assert json.loads(out)["status"] == "accepted" and json.loads(out)["seq"] == 3
    code, out = await replay(topics, "case", case)
    assert code == 0 and "AppealAccepted" in out and "+08:00" not in out
    code, out = await replay(topics, "case", case, "--format", "csv")
    assert out.splitlines()[0].startswith("case_id,seq,time_cst") and len(out.splitlines()) == 6
    code, out = await replay(topics, "case", case, "--format", "json")
    assert [json.loads(x)["event"] for x in out.splitlines()][-1] == "AppealClosed"
    # An auditor names the case as the board or the source system does: its 工单编号, or the
    # beginning of its id; too short, or shared with another case, is said in a line.
    ref = query(topics, "SELECT source_ref FROM source_refs WHERE case_id = %s", case)[0][0]
    for name in (ref, case[:8]):
        code, out = await replay(topics, "case", name, "--format", "json")
        assert code == 0 and [json.loads(x)["case_id"] for x in out.splitlines()] == [case] * 5, name
    assert (await replay(topics, "case", case[:5]))[0] == 2
    other = (await api.submit())["case_id"]
    shared = next(n for n in range(8, 37) if case[:n] != other[:n]) - 1
    assert (await replay(topics, "case", case[:shared]))[0] == 2
    assert (await replay(topics, "case", case[:shared + 1]))[0] == 0
    # On an 80-column terminal the words stay whole: only the reasons fold.
    buf = io.StringIO()
    assert replay_cli.run(build_parser().parse_args(["replay", "case", case]), topics,
                          Console(file=buf, width=80, highlight=False)) == 0
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert all(any(name in line for line in lines) for name in ("AppealSubmitted", "AppealAccepted", "AppealClosed"))


async def test_rebuild_equals_the_live_projections_after_a_long_run(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)
    rng = random.Random(7)
    cases = []
    async with faust_worker(s, clock):
        for i in range(24):
            case = (await api.submit(category=rng.choice(["approval", "labor", "land_planning"]),
                                     priority=rng.choice(["normal", "urgent"])))["case_id"]
            cases.append(case)
            dept = rng.choice(["bh-market", "bh-hrss"])
            await api.ok("dispatcher", case, "dispatch", department=dept)
            if i % 4 == 0:
                continue  # left to breach
            await api.ok(dept, case, "accept")
            if i % 4 == 1:
                await api.ok(dept, case, "request_materials", items=["材料"], note="")
                continue
            await api.ok(dept, case, "reply", content="答复")
            await api.ok("dispatcher", case, "close", outcome=rng.choice(["resolved", "explained"]))
            await api.ok("enterprise", case, "feedback", rating=rng.choice(["satisfied", "unsatisfied"]))
            if i % 4 == 3:
                await api.ok("dispatcher", case, "reopen", reason="重办")
            clock.advance(timedelta(minutes=25))
        # Wait for quiet: every due timer fired and its event projected.
        live: dict[str, list[tuple[Any, ...]]] = {}
        for _ in range(100):
            for case in cases:
                await caught_up(s, case)
            due = query(s, "SELECT count(*) FROM sla_timers WHERE fire_at <= %s", clock.now())[0][0]
            now = snapshot(s)
            if due == 0 and now == live:
                break
            live = now
            await asyncio.sleep(0.2)
        assert live["case_view"] and live["closures"] and live["sla_timers"]
        assert live["replies"] and live["department_days"]
    # Rebuild replaces the tables: their indexes, constraints and grants must come along.
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    assert s.database_url
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {reader}")
        conn.execute(f"GRANT SELECT ON case_view, case_timeline TO {reader}")
        conn.execute("ALTER TABLE case_view SET (autovacuum_vacuum_scale_factor = 0.05, fillfactor = 90)")
        conn.execute("COMMENT ON TABLE case_view IS '诉求视图'")
        conn.execute("COMMENT ON COLUMN case_view.rating IS '满意度'")
    schema = catalog(s)
    assert any(" PRIMARY KEY " in c for c in schema) and any("case_view_department" in c for c in schema)
    assert f"grant case_timeline {reader} SELECT" in schema
    assert "table case_view autovacuum_vacuum_scale_factor=0.05,fillfactor=90 诉求视图" in schema
    assert "column case_view.rating text false  满意度" in schema
    # Inline (the default for a small store) and split over two worker processes.
    for argv in (["rebuild"], ["rebuild", "--workers", "2"]):
        assert (await replay(s, *argv))[0] == 0
        rebuilt = snapshot(s)
        for table, rows in live.items():
            assert rebuilt[table] == rows, (argv, table, sorted(set(rebuilt[table]) ^ set(rows), key=str))
        assert catalog(s) == schema
    assert not query(s, "SELECT relname FROM pg_class WHERE relname LIKE 'rebuild_%%' "
                        "AND relnamespace = current_schema()::regnamespace")


async def test_rebuild_includes_what_is_stored_while_it_runs(topics: Settings, runtime: Runtime, api: Api) -> None:
    """Events stored after the rebuild's snapshot are applied when it swaps its rows in."""
    s = topics
    assert s.database_url
    first = await lifecycle(api)
    second = (await api.submit())["case_id"]
    await api.ok("dispatcher", second, "dispatch", department="bh-market")
    loop = asyncio.get_running_loop()
    during: list[str] = []

    def progress(n: int) -> None:  # runs in the rebuild's thread once the share has been read
        if not during:
            late = asyncio.run_coroutine_threadsafe(api.submit(), loop).result()["case_id"]
            asyncio.run_coroutine_threadsafe(api.ok("bh-market", second, "accept"), loop).result()
            during.append(late)

    folded = await rebuild(s.database_url, None, runtime.clock.now, s.events_topic, s.partitions, progress=progress)
    assert during and folded == 7 + 2 + 1 + 1
    views = dict(query(s, "SELECT case_id, seq FROM case_view WHERE case_id = ANY(%s)", [first, second, during[0]]))
    assert views == {first: 7, second: 3, during[0]: 1}
    assert query(s, "SELECT count(*) FROM case_timeline WHERE case_id = %s", second) == [(3,)]
    assert query(s, "SELECT accepted_at IS NOT NULL FROM assignments WHERE case_id = %s", second) == [(True,)]


async def test_a_live_worker_keeps_projecting_across_a_rebuild(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    """The swap replaces the tables under a running projector, whose statements are prepared by then."""
    s = topics
    async with faust_worker(s, clock):
        before = []
        for _ in range(6):  # psycopg prepares a statement on its 5th execution
            case = (await api.submit())["case_id"]
            await caught_up(s, case)
            before.append(case)
        assert (await replay(s, "rebuild"))[0] == 0
        after = (await api.submit())["case_id"]
        await api.ok("dispatcher", after, "dispatch", department="bh-market")
        await api.ok("dispatcher", before[0], "dispatch", department="bh-market")
        assert await caught_up(s, after) == 2 and await caught_up(s, before[0]) == 2
    assert query(s, "SELECT count(*) FROM case_timeline WHERE case_id = ANY(%s)", [after, before[0]]) == [(4,)]


async def test_a_view_on_a_read_model_stops_the_rebuild_with_nothing_changed(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    s = topics
    assert s.database_url
    case = await lifecycle(api)
    assert (await replay(s, "rebuild"))[0] == 0
    before = snapshot(s)
    assert [r[0] for r in before["case_view"]] == [case]
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        conn.execute("CREATE VIEW open_cases AS SELECT case_id FROM case_view WHERE closed_at IS NULL")
    await api.submit()  # a rebuild would now add a case
    code, out = await replay(s, "rebuild")
    assert code == 1 and "case_view cannot be replaced" in out and "view open_cases depends" in out, out
    assert snapshot(s) == before
    assert not query(s, "SELECT relname FROM pg_class WHERE relname LIKE 'rebuild_%%' "
                        "AND relnamespace = current_schema()::regnamespace")


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_rebuild_whose_policy_lacks_a_year_the_store_needs_fails_cleanly(
        topics: Settings, clock: ManualClock, tmp_path: Path, workers: str) -> None:
    s = topics
    fixed = knowing_2027(s, tmp_path)
    case = await dispatched_into_2032(fixed, clock)
    before = snapshot(s)
    code, out = await replay(s, "rebuild", "--workers", workers)  # the shipped policy: not as far as 2032
    assert code == 1 and "read models unchanged" in out and "no working-day calendar for 2032" in out, out
    assert "Traceback" not in out
    assert snapshot(s) == before
    code, out = await replay(fixed, "rebuild", "--workers", workers)
    assert code == 0, out
    assert query(s, "SELECT seq, extract(year FROM resolve_due AT TIME ZONE 'UTC') FROM case_view "
                    "WHERE case_id = %s", case) == [(2, 2032)]


def catalog(s: Settings) -> list[str]:
    """The read models' columns, indexes, constraints, grants and settings, as PostgreSQL prints them."""
    tables = ["case_view", "case_timeline", "sla_timers", "assignments", "closures"]
    rows = query(s, """
        SELECT 'index ' || pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
         WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s)
        UNION ALL
        SELECT 'constraint ' || t.relname || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
          FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
         WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s)
        UNION ALL
        SELECT 'grant ' || table_name || ' ' || grantee || ' ' || privilege_type
          FROM information_schema.role_table_grants
         WHERE table_schema = current_schema() AND table_name = ANY(%s)
        UNION ALL
        SELECT 'table ' || relname || ' ' || coalesce(array_to_string(reloptions, ','), '') || ' '
               || coalesce(obj_description(oid, 'pg_class'), '')
          FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relname = ANY(%s)
        UNION ALL
        SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
               || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' '
               || coalesce(col_description(c.oid, a.attnum), '')
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)
           AND a.attnum > 0 AND NOT a.attisdropped""", tables, tables, tables, tables, tables)
    return sorted(r[0] for r in rows)


async def test_restore_into_an_empty_broker_then_verify_against_topic_is_clean(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    s = topics
    for _ in range(3):
        await lifecycle(api)
    # An empty broker, as after the embedded one restarted: fresh topics under another prefix.
    empty = s.with_(topic_prefix=f"restored{uuid.uuid4().hex[:6]}.")
    await ensure_topics(empty)
    code, out = await replay(empty, "verify", "--against-topic")
    assert code == 1 and out.count("missing on topic") == 21
    code, out = await replay(empty, "restore")
    assert code == 0 and "republished 21 event(s)" in out
    code, out = await replay(empty, "verify", "--all", "--against-topic")
    assert code == 0, out
    assert "21 event(s) verified" in out and "OK" in out
    # A record on the topic the store does not have is listed too.
    execute(s, "DELETE FROM outbox")
    last = query(s, "SELECT case_id, max(seq) FROM events GROUP BY case_id LIMIT 1")[0]
    execute(s, "DELETE FROM events WHERE case_id = %s AND seq = %s", *last)
    code, out = await replay(empty, "verify", "--against-topic")
    assert code == 1 and "missing in store" in out


async def test_exported_package_verifies_offline_and_catches_edits_and_rewritten_chains(
        topics: Settings, runtime: Runtime, api: Api, tmp_path: Path) -> None:
    s = topics
    a, b = await lifecycle(api), await lifecycle(api)
    pkg = tmp_path / "pkg"
    code, out = await replay(s, "export", "--from", "2026-07-01T00:00+08:00", "--to", "2026-08-01T00:00+08:00",
                       "--department", "bh-market", "--jurisdiction", "tj-binhai", "--out", str(pkg))
    assert code == 0 and "14 event(s) of 2 case(s)" in out
    manifest = json.loads((pkg / "manifest.json").read_text("utf-8"))
    assert set(manifest["cases"]) == {a, b} and manifest["counts"] == {"cases": 2, "events": 14}
    assert "许可证已核发" in (pkg / "timeline.csv").read_text("utf-8")
    offline = s.with_(database_url=None)
    assert await replay(offline, "verify", "--package", str(pkg)) == (0, f"package {pkg}: 2 cases, 14 events: OK\n")
    assert (await replay(s, "verify", "--all", "--against-package", str(pkg)))[0] == 0
    # Nothing for a department that never had these cases.
    code, out = await replay(s, "export", "--from", "2026-07-01T00:00+08:00", "--to", "2026-08-01T00:00+08:00",
                       "--department", "bh-eco", "--out", str(tmp_path / "none"))
    assert "0 event(s) of 0 case(s)" in out
    # A typed-wrong department, a window backwards, a file for a directory: refused, nothing written.
    (tmp_path / "a-file").write_text("", "utf-8")
    july = ["--from", "2026-07-01T00:00+08:00", "--to", "2026-08-01T00:00+08:00"]
    for wrong in ([*july, "--department", "bh-mraket", "--out", str(tmp_path / "typo")],
                  ["--from", "2026-07-01T00:00+08:00", "--to", "2026-06-01T00:00+08:00",
                   "--out", str(tmp_path / "backwards")],
                  [*july, "--out", str(tmp_path / "a-file")]):
        assert (await replay(s, "export", *wrong))[0] == 2, wrong
    assert not (tmp_path / "typo").exists() and not (tmp_path / "backwards").exists()

    # A superuser rewrites case A's reply and re-chains it: the store alone looks clean...
    data = bytes(query(s, "SELECT data FROM events WHERE case_id = %s AND seq = 6", a)[0][0])
    execute(s, "UPDATE events SET data = %s WHERE case_id = %s AND seq = 6",
            edit_text(data, "许可证已核发", "许可证未核发"), a)
    rechain(s, a)
    assert (await replay(s, "verify", "--all"))[0] == 0
    # ...but not against the earlier export's chain heads.
    code, out = await replay(s, "verify", "--all", "--against-package", str(pkg))
    assert code == 1 and f"case {a} seq 7: rewritten" in out and b not in out

    # One byte changed in the package itself.
    raw = bytearray((pkg / "events.jsonl").read_bytes())
    i = raw.index(b'"avro": "') + 40
    raw[i] = ord("A") if raw[i] != ord("A") else ord("B")
    (pkg / "events.jsonl").write_bytes(bytes(raw))
    code, out = await replay(offline, "verify", "--package", str(pkg))
    assert code == 1 and "file changed: events.jsonl" in out and "chain broken" in out

    # A manifest that is not to be trusted fails the verification in a line; it cannot point
    # the verifier at files outside the package.
    written = pkg / "manifest.json"
    good = written.read_text("utf-8")
    for edit, said in (
        (good[: len(good) // 2], "manifest.json: not JSON"),
        ("[]", "manifest.json: not a suqiu-audit-package/1 manifest"),
        (json.dumps({**manifest, "files": {"../../../etc/passwd": "0" * 64, "timeline.csv": "0" * 64}}),
         "files: names exactly events.jsonl, timeline.csv"),
        (json.dumps({**manifest, "cases": {a: {**manifest["cases"][a], "last_seq": "7"}}}), f"cases: '{a}' needs"),
        (json.dumps({**manifest, "counts": {"cases": 2}}), "counts: needs whole numbers"),
    ):
        written.write_text(edit, "utf-8")
        code, out = await replay(offline, "verify", "--package", str(pkg))
        assert code == 1 and "BROKEN case - seq 0: manifest: " in out and said in out, out
        code, out = await replay(s, "verify", "--all", "--against-package", str(pkg))
        assert code == 1 and said in out, out
    written.write_text(good, "utf-8")
    (pkg / "events.jsonl").unlink()
    code, out = await replay(offline, "verify", "--package", str(pkg))
    assert code == 1 and "file missing: events.jsonl" in out and "head" in out, out
    assert (await replay(offline, "verify", "--package", str(tmp_path / "no-such-package")))[0] == 2


@pytest.mark.parametrize("typed", ['=HYPERLINK("http://evil.example","详情")', "+1+2", "-2+3", "@SUM(A1)", "\t=1"])
def test_a_timeline_cell_a_spreadsheet_would_run_is_exported_as_text(typed: str) -> None:
    entry = {"case_id": "c", "seq": 1, "time_cst": "2026-07-21 10:00", "time_utc": "2026-07-21T02:00:00Z",
             "event": "AppealReplied", "actor": {"system": "tj", "role": "department", "department": "bh-market",
                                                "person": typed}, "reason": typed, "deadlines": {}, "sla": "", "hash": "h"}
    row = next(csv.DictReader(io.StringIO(history.to_csv([entry]))))
    assert row["reason"] == "'" + typed and row["actor_person"] == "'" + typed
    assert row["seq"] == "1" and row["event"] == "AppealReplied"
