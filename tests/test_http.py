"""The HTTP API against real PostgreSQL: lifecycle, error contract, idempotency, concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.schemas.codec import Codec
from suqiu.service.runtime import Runtime
from tests.conftest import Api, stored, submission
from tests.support.sla import chain_ok


async def test_every_lifecycle_command_over_http(api: Api, settings: Settings) -> None:
    case = (await api.submit())["case_id"]
    steps = [
        ("dispatcher", "dispatch", {"department": "bh-approval", "note": "请核实"}),
        ("bh-approval", "return", {"reason": "非本部门职责"}),
        ("dispatcher", "dispatch", {"department": "bh-market"}),
        ("dispatcher", "transfer", {"department": "bh-planning", "reason": "涉及规划"}),
        ("bh-planning", "accept", {}),
        ("bh-planning", "request_materials", {"items": ["总平面图"], "note": "请补充"}),
        ("enterprise", "supply_materials", {"note": "已上传"}),
        ("bh-planning", "request_extension", {"working_days": 3, "reason": "会商"}),
        ("dispatcher", "deny_extension", {"reason": "无需延期"}),
        ("bh-planning", "request_extension", {"working_days": 2, "reason": "再次申请"}),
        ("dispatcher", "grant_extension", {}),
        ("dispatcher", "urge", {"note": "请加快"}),
        ("bh-planning", "reply", {"content": "已核发规划许可"}),
        ("dispatcher", "close", {"outcome": "resolved", "note": "企业确认"}),
        ("enterprise", "feedback", {"rating": "unsatisfied", "comment": "太慢"}),
        ("dispatcher", "reopen", {"reason": "企业不满意"}),
        ("bh-planning", "accept", {}),
        ("bh-planning", "return", {"reason": "需上级协调"}),
        ("dispatcher", "escalate", {"target_system": "tj-city", "reason": "跨区事项"}),
        ("system", "upper_level_reply", {"upper_case_id": "city-123", "content": "市级已协调"}),
        ("dispatcher", "close", {"outcome": "resolved"}),
        ("enterprise", "feedback", {"rating": "satisfied"}),
    ]
    for i, (who, type_name, fields) in enumerate(steps, start=2):
        result = await api.ok(who, case, type_name, **fields)
        assert result["seq"] == i and result["status"] == "accepted"
    other = (await api.submit())["case_id"]
    await api.ok("enterprise", other, "withdraw", reason="已自行解决")
    status, view = await api.call("auditor", "GET", f"/appeals/{other}")
    assert status == 200 and view["status"] == "withdrawn" and view["outcome"] == "withdrawn"

    status, view = await api.call("auditor", "GET", f"/appeals/{case}")
    assert status == 200
    assert (view["status"], view["rating"], view["reopen_count"], view["seq"]) == ("closed", "satisfied", 1, 23)
    status, hist = await api.call("auditor", "GET", f"/appeals/{case}/history")
    types = [e["event_type"] for e in hist["events"]]
    assert types[:4] == ["AppealSubmitted", "AppealDispatched", "AppealReturned", "AppealDispatched"]
    assert "UpperLevelReplied" in types and types[-1] == "FeedbackReceived"
    assert [e["seq"] for e in hist["events"]] == list(range(1, 24))
    assert hist["events"][1]["actor"]["role"] == "dispatcher"
    assert hist["events"][2]["data"]["reason"] == "非本部门职责"
    assert chain_ok(settings, case)


async def test_deadlines_follow_the_business_calendar(api: Api) -> None:
    # Submitted Tuesday 2026-07-21 10:00 Tianjin: accept within 2 working hours, resolve in 5 working days.
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    _, view = await api.call("auditor", "GET", f"/appeals/{case}")
    assert view["accept_due"] == "2026-07-21T04:00:00.000Z"   # 12:00 local
    assert view["resolve_due"] == "2026-07-28T02:00:00.000Z"  # next Tuesday 10:00 local
    assert view["sla_status"] == "on_time"


async def test_a_deadline_past_the_official_calendar_is_provisional_and_says_so(api: Api, clock: ManualClock) -> None:
    # Sunday 2026-12-20 10:00 Tianjin, land planning (15 working days): no 2027 notice exists, so
    # the deadline is placed on the provisional calendar (weekends, statutory holidays) and says so.
    clock.set(datetime(2026, 12, 20, 2, 0, tzinfo=UTC))
    case = (await api.submit(category="land_planning"))["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-planning")
    _, view = await api.call("auditor", "GET", f"/appeals/{case}")
    # Dec 21-31: 9 working days; 1 Jan off; 4-8 Jan: 5; Mon 11 Jan the 15th, to 17:30.
    assert view["resolve_due"] == "2027-01-11T09:30:00.000Z"
    assert view["provisional_deadlines"] == ["resolve"]  # accept (2 h) falls on Monday 21 Dec: official
    _, hist = await api.call("auditor", "GET", f"/appeals/{case}/history")
    dispatched = hist["events"][1]["data"]
    assert dispatched["provisional"] == ["resolve"] and dispatched["provisional_from"] == "2027-01-01"


async def test_a_deadline_past_the_provisional_horizon_is_a_typing_error_and_nothing_stored(
        api: Api, settings: Settings, clock: ManualClock) -> None:
    # The official calendar ends 2026-12-31; provisional days reach five years on, to 2031-12-31.
    clock.set(datetime(2031, 12, 29, 2, 0, tzinfo=UTC))
    case = (await api.submit())["case_id"]
    before = stored(settings)
    status, body = await api.do("dispatcher", case, "dispatch", department="bh-market")
    assert status == 503, body
    assert body["error"]["code"] == "calendar_unknown"
    assert "no working-day calendar for 2032" in body["error"]["message"]
    assert body["error"]["details"]["year"] == 2032
    assert stored(settings) == before
    _, view = await api.call("auditor", "GET", f"/appeals/{case}")
    assert view["status"] == "submitted"


async def test_repeated_command_id_and_source_ref_store_nothing_new(api: Api, settings: Settings) -> None:
    body = submission()
    s1, first = await api.call("intake", "POST", "/appeals", body)
    before = stored(settings)
    s2, again = await api.call("intake", "POST", "/appeals", body)
    assert (s1, s2) == (201, 200)
    assert again["case_id"] == first["case_id"] and again["event_id"] == first["event_id"]
    assert again["status"] == "duplicate"
    # Same source reference under a new command id: the same case, not a new one.
    s3, same_source = await api.call("intake", "POST", "/appeals", {**body, "command_id": str(uuid.uuid4())})
    assert s3 == 200 and same_source["case_id"] == first["case_id"]
    cmd = str(uuid.uuid4())
    r1 = await api.ok("dispatcher", first["case_id"], "dispatch", department="bh-market", command_id=cmd)
    mid = stored(settings)
    r2 = await api.ok("dispatcher", first["case_id"], "dispatch", department="bh-market", command_id=cmd)
    assert r2["status"] == "duplicate" and r2["event_id"] == r1["event_id"] and stored(settings) == mid
    # The same command id for a different command is refused, not silently answered.
    status, err = await api.do("dispatcher", first["case_id"], "dispatch", department="bh-hrss", command_id=cmd)
    assert status == 409 and err["error"]["code"] == "idempotency_mismatch"
    assert stored(settings) == mid
    assert before["events"] == 1


async def test_bad_input_is_refused_by_field_and_nothing_is_stored(api: Api, settings: Settings) -> None:
    case = (await api.submit())["case_id"]
    baseline = stored(settings)
    uscc_bad = submission(enterprise={"uscc": "91110000600037341X", "name": "某公司"})
    cases = [
        ("intake", "/appeals", None, b"{not json", 400, "body"),
        ("intake", "/appeals", [1, 2], None, 400, "body"),
        ("intake", "/appeals", {k: v for k, v in submission().items() if k != "title"}, None, 400, "title"),
        ("intake", "/appeals", submission(colour="red"), None, 400, "colour"),
        ("intake", "/appeals", uscc_bad, None, 400, "enterprise.uscc"),
        ("intake", "/appeals", submission(enterprise={"uscc": "123", "name": "x"}), None, 400, "enterprise.uscc"),
        ("intake", "/appeals", submission(jurisdiction="tj-nowhere"), None, 400, "jurisdiction"),
        ("intake", "/appeals", submission(category="weather"), None, 400, "category"),
        ("intake", "/appeals", submission(channel="fax"), None, 400, "channel"),
        ("intake", "/appeals", submission(occurred_at="2026-07-21T10:00:00"), None, 400, "occurred_at"),
        ("intake", "/appeals", {k: v for k, v in submission().items() if k != "command_id"}, None, 400, "command_id"),
        ("dispatcher", f"/appeals/{case}/commands", {"type": "dispatch", "command_id": "c1", "department": "bh-nope"},
         None, 400, "department"),
        ("dispatcher", f"/appeals/{case}/commands", {"type": "fly", "command_id": "c2"}, None, 400, "type"),
        ("dispatcher", f"/appeals/{case}/commands", {"type": "dispatch", "command_id": "c3"}, None, 400, "department"),
    ]
    for who, path, body, raw, want, field in cases:
        status, err = await api.call(who, "POST", path, body, raw=raw)
        assert status == want, (path, body, err)
        assert err["error"]["code"] == "invalid_input"
        assert err["error"]["details"]["field"] == field, err
    assert stored(settings) == baseline


async def test_state_role_scope_auth_and_size_errors_store_nothing(api: Api, settings: Settings) -> None:
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    baseline = stored(settings)
    status, err = await api.do("bh-market", case, "reply", content="答复")
    assert status == 409 and err["error"]["details"]["state"] == "dispatched"
    assert "答复 only an accepted case" in err["error"]["message"]
    status, err = await api.do("bh-hrss", case, "accept")
    assert status == 403 and "department scoping" in err["error"]["details"]["rule"]
    status, err = await api.do("intake", case, "dispatch", department="bh-hrss")
    assert status == 403 and err["error"]["details"]["rule"].startswith("dispatch is for")
    status, err = await api.do("auditor", case, "urge")
    assert status == 403 and err["error"]["details"]["rule"] == "auditor read-only"
    status, err = await api.do("dispatcher", case, "urge", expected_seq=1)
    assert status == 409 and err["error"]["details"] == {"expected_seq": 1, "actual_seq": 2}
    status, err = await api.do("dispatcher", str(uuid.uuid4()), "urge")
    assert status == 404 and err["error"]["code"] == "not_found"
    status, err = await api.call(None, "POST", f"/appeals/{case}/commands", {"type": "urge", "command_id": "x"})
    assert status == 401 and err["error"]["code"] == "unauthorized"
    status, err = await api.call("sq_not_a_key", "POST", f"/appeals/{case}/commands", {"type": "urge", "command_id": "x"})
    assert status == 401
    status, err = await api.call("intake", "POST", "/appeals", raw=b'{"content": "' + b"x" * 300_000 + b'"}')
    assert status == 413 and err["error"]["code"] == "too_large"
    status, err = await api.call("auditor", "GET", f"/appeals/{uuid.uuid4()}")
    assert status == 404
    assert stored(settings) == baseline
    # The closed-case rule: a closed case cannot be replied to.
    await api.ok("bh-market", case, "accept")
    await api.ok("bh-market", case, "reply", content="已处理")
    await api.ok("dispatcher", case, "close", outcome="resolved")
    status, err = await api.do("bh-market", case, "reply", content="again")
    assert status == 409 and err["error"]["details"]["state"] == "closed"


async def test_two_writers_racing_one_wins_and_the_chain_holds(api: Api, settings: Settings) -> None:
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    for _round in range(5):
        _, view = await api.call("auditor", "GET", f"/appeals/{case}")
        seq = view["seq"]
        results = await asyncio.gather(*[
            api.do("dispatcher", case, "urge", note=f"writer {i}", expected_seq=seq) for i in range(2)
        ])
        statuses = sorted(s for s, _ in results)
        assert statuses == [200, 409], results
    assert chain_ok(settings, case)
    # Without expected_seq, concurrent writers are serialised by retrying: all land, no gap.
    results = await asyncio.gather(*[api.do("dispatcher", case, "urge", note=f"w{i}") for i in range(8)])
    assert all(s == 200 for s, _ in results)
    _, view = await api.call("auditor", "GET", f"/appeals/{case}")
    assert view["seq"] == 2 + 5 + 8
    assert chain_ok(settings, case)


async def test_schemas_endpoint_serves_every_fingerprint(api: Api) -> None:
    status, listing = await api.call(None, "GET", "/schemas")
    assert status == 200
    names = {s["name"] for s in listing["schemas"]}
    assert "suqiu.events.AppealSubmitted" in names and "suqiu.commands.Command" in names
    fp = next(s["fingerprint"] for s in listing["schemas"] if s["name"] == "suqiu.events.AppealDispatched")
    status, one = await api.call(None, "GET", f"/schemas/{fp}")
    assert status == 200 and one["schema"]["name"] == "AppealDispatched"
    assert Codec().current["suqiu.events.AppealDispatched"].fingerprint == fp
    status, _ = await api.call(None, "GET", "/schemas/0000000000000000")
    assert status == 404


async def test_health_reports_database_and_broker(api: Api, clock: ManualClock) -> None:
    status, body = await api.call(None, "GET", "/health")
    assert status == 200 and body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    assert body["checks"]["calendar"] == {"status": "ok", "official_through": "2026-12-31",
                                          "provisional_through": "2031-12-31"}  # in July
    # From November, deadlines may run into 2027: health says they are provisional, still 200.
    clock.set(datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    status, body = await api.call(None, "GET", "/health")
    assert status == 200 and body["checks"]["calendar"]["official_through"] == "2026-12-31"
    assert "no State Council notice for 2027" in body["checks"]["calendar"]["status"]
    assert "provisional" in body["checks"]["calendar"]["status"]


async def test_the_jurisdiction_tree_is_listed_nested(api: Api) -> None:
    status, body = await api.call("auditor", "GET", "/jurisdictions")
    assert status == 200

    def walk(nodes: list[dict[str, Any]], parent: str | None) -> list[str]:
        out = []
        for n in nodes:
            assert n["parent"] == parent, n
            out += [n["code"], *walk(n["children"], n["code"])]
        return out

    codes = walk(body["jurisdictions"], None)
    assert "tj-binhai" in codes and "tj-teda" in codes and len(codes) == len(set(codes))
    assert codes.index("tj-binhai") < codes.index("tj-teda")  # a zone under its district


async def test_health_bounds_each_check_and_says_which_is_down(api: Api, runtime: Runtime) -> None:
    # Every pooled connection is taken: the database check waits no longer than its own bound.
    held = [await runtime.pool.getconn() for _ in range(runtime.pool.max_size)]
    try:
        status, body = await api.call(None, "GET", "/health")
    finally:
        for conn in held:
            await runtime.pool.putconn(conn)
    assert status == 503 and body["status"] == "degraded"
    assert body["checks"]["database"].startswith("unreachable: no answer within")
    assert body["checks"]["broker"] == "ok"
    status, body = await api.call(None, "GET", "/health")
    assert status == 200 and body["checks"]["database"] == "ok"


async def test_clients_that_leave_mid_request_log_no_error(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    # Load generators killed mid-flight, browsers closing tabs: routine, not an operator's problem.
    host, port = api.base.split("//")[1].rsplit(":", 1)
    body = json.dumps(submission()).encode()
    reset = struct.pack("ii", 1, 0)  # SO_LINGER 0: close with a RST, as a killed process does
    requests = [f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.keys['dispatcher']}\r\n\r\n".encode()
                for path in ("/v1/openapi.json", "/metrics", "/v1/appeals?limit=500", "/board/")]
    requests.append(f"POST /v1/appeals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.keys['intake']}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:20])
    with capture_logs() as logs:
        for raw in requests:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(raw)
            await writer.drain()
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
            writer.close()
        status, _ = await api.call(None, "GET", "/health")  # the server is still there and answers
        await asyncio.sleep(0.5)  # real time for the server to notice the resets
    assert status in (200, 503)
    assert not [entry for entry in logs if entry["log_level"] in ("warning", "error", "critical")
                or "exc_info" in entry], logs
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.records
