"""`suqiu up --demo`: a symposium (座谈会) in TEDA raises four appeals; play them over the HTTP API."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import aiohttp
import psycopg

from suqiu.domain.model import Role
from suqiu.domain.uscc import complete_uscc
from suqiu.store.keys import create_key

DEMO_DEPARTMENTS = ("bh-approval", "bh-planning", "bh-hrss", "bh-market", "bh-eco")
ENTERPRISES = [
    (complete_uscc("91120116MA05JQ2X"), "天津泰达智能装备有限公司"),
    (complete_uscc("91120116MA06B7K2"), "天津滨海新材料科技有限公司"),
    (complete_uscc("91120118MA05PQ8R"), "天津自贸区跨境物流有限公司"),
    ("91110000600037341L", "北京某外资企业天津分公司"),
]


def say(text: str) -> None:
    sys.stdout.write(f"[demo] {text}\n")
    sys.stdout.flush()


def short(case_id: str) -> str:
    """A case id for the narration: UUIDv7 ids share their leading (time) digits, so the tail."""
    return "…" + case_id[-8:]


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, keys: dict[str, str]) -> None:
        self.session, self.base, self.keys = session, base, keys

    async def call(self, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.session.request(method, f"{self.base}/v1{path}", json=body,
                                        headers={"Authorization": f"Bearer {self.keys[key]}"}) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {data}")
            return data

    async def do(self, key: str, case_id: str, type_name: str, label: str, **fields: Any) -> None:
        result = await self.call(key, "POST", f"/appeals/{case_id}/commands",
                                 {"type": type_name, "command_id": str(uuid.uuid4()), **fields})
        say(f"  {short(case_id)} seq {result['seq']:>2}  {type_name:<17} {label}")


async def play(http_url: str, keys: dict[str, dict[str, Any]], database_url: str, system_id: str = "tj-binhai",
               timeout: float = 240.0) -> None:
    secrets = {role: k["key"] for role, k in keys.items()}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for dept in DEMO_DEPARTMENTS:
            secrets[dept] = create_key(conn, system_id, Role.DEPARTMENT, dept, "suqiu-demo")
    async with aiohttp.ClientSession() as session:
        c = Client(session, http_url, secrets)
        say("泰达企业座谈会 (TEDA symposium): four enterprises raise appeals")
        topics = [
            ("approval", "normal", "新建厂房施工许可审批进度咨询", "二期厂房施工许可已提交三周，希望了解审批进度。"),
            ("labor", "normal", "高层次人才落户政策咨询", "引进的两名博士希望办理落户，需要了解政策与材料。"),
            ("environment", "urgent", "园区污水管网堵塞影响生产", "厂区外市政污水管网堵塞，已影响正常生产。"),
            ("policy", "normal", "外资企业研发费用加计扣除", "咨询外资研发中心享受加计扣除的条件。"),
        ]
        cases = []
        for i, ((uscc, name), (category, priority, title, content)) in enumerate(zip(ENTERPRISES, topics, strict=True)):
            r = await c.call("intake", "POST", "/appeals", {
                "command_id": str(uuid.uuid4()), "source_system": "teda-symposium",
                "source_ref": f"TEDA-ZTH-{uuid.uuid4().hex[:6]}-{i + 1:02d}",
                "enterprise": {"uscc": uscc, "name": name, "contact_name": "王经理", "contact_phone": "022-6620000" + str(i)},
                "channel": "symposium", "category": category, "priority": priority, "jurisdiction": "tj-teda",
                "title": title, "content": content,
            })
            cases.append(r["case_id"])
            say(f"  {short(r['case_id'])} seq  1  submit            {name}: {title}")
        a, b, u, w = cases
        say("Case A: dispatched to the approval bureau, transferred to planning, materials, reply, closed, rated")
        await c.do("dispatcher", a, "dispatch", "派单 → 行政审批局", department="bh-approval", note="请核实审批进度")
        await c.do("dispatcher", a, "transfer", "转办 → 规划和自然资源局", department="bh-planning", reason="涉及规划许可")
        await c.do("bh-planning", a, "accept", "签收")
        await c.do("bh-planning", a, "request_materials", "补充材料 (clock paused)", items=["总平面图", "用地规划许可证"])
        await c.do("enterprise", a, "supply_materials", "材料已补充 (clock resumes)", note="已上传")
        await c.do("bh-planning", a, "reply", "答复", content="规划许可已于本周核发，施工许可可同步办理。")
        await c.do("dispatcher", a, "close", "办结: resolved", outcome="resolved", note="企业确认")
        await c.do("enterprise", a, "feedback", "评价: satisfied", rating="satisfied", comment="办理及时")
        say("Case B: returned by market regulation, re-dispatched to HR, extension granted, unsatisfied, reopened")
        await c.do("dispatcher", b, "dispatch", "派单 → 市场监管局", department="bh-market")
        await c.do("bh-market", b, "return", "退回: 非本部门职责", reason="人才落户由人社局负责")
        await c.do("dispatcher", b, "dispatch", "派单 → 人社局", department="bh-hrss")
        await c.do("bh-hrss", b, "accept", "签收")
        await c.do("bh-hrss", b, "request_extension", "申请延期 3 个工作日", working_days=3, reason="需与市公安局会商")
        await c.do("dispatcher", b, "grant_extension", "同意延期")
        await c.do("bh-hrss", b, "reply", "答复", content="符合条件，可通过人才绿卡办理落户。")
        await c.do("dispatcher", b, "close", "办结: explained", outcome="explained")
        await c.do("enterprise", b, "feedback", "评价: unsatisfied", rating="unsatisfied", comment="流程仍不清楚")
        await c.do("dispatcher", b, "reopen", "重办", reason="企业不满意，请详细说明办理流程")
        say("Case C: urgent sewage blockage, dispatched and urged")
        await c.do("dispatcher", u, "dispatch", "派单 → 生态环境局 (urgent)", department="bh-eco")
        await c.do("dispatcher", u, "urge", "催办", note="影响生产，请尽快处理")
        say("Case D: withdrawn by the enterprise")
        await c.do("enterprise", w, "withdraw", "撤回", reason="已通过税务热线解决")
        hist = await c.call("auditor", "GET", f"/appeals/{a}/history")
        say(f"Case A history: {len(hist['events'])} events, chain head {hist['events'][-1]['hash'][:16]}…")
        view = await c.call("auditor", "GET", f"/appeals/{u}")
        say(f"Case C now: {view['status']} at {view['department']}, accept due {view['accept_due']}, SLA {view['sla_status']}")
        await watch_sla(c, u, b, timeout)
        await show_figures(c)
    say("demo finished; the stack keeps running until Ctrl-C")


async def watch_sla(c: Client, urgent: str, reopened: str, timeout: float) -> None:
    """Nobody accepts case C: the SLA timers warn, breach and open supervision (督办) on their own."""
    say("Waiting for the SLA timers (demo policy: accept within 1 minute, 督办 1 minute after a breach)...")
    wanted = {"SlaWarning", "SlaBreached", "SupervisionOpened"}
    seen: set[tuple[str, int]] = set()
    urgent_kinds: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not wanted <= urgent_kinds:
        await asyncio.sleep(2)
        for case in (urgent, reopened):
            for ev in (await c.call("auditor", "GET", f"/appeals/{case}/history"))["events"]:
                if ev["event_type"] in wanted and (case, ev["seq"]) not in seen:
                    seen.add((case, ev["seq"]))
                    if case == urgent:
                        urgent_kinds.add(ev["event_type"])
                    say(f"  {short(case)} seq {ev['seq']:>2}  {ev['event_type']:<17} clock {ev['data']['clock']:<9} "
                        f"at {ev['occurred_at']} by the {ev['actor']['role']} timers")
    if not wanted <= urgent_kinds:
        say("  (timed out waiting for the SLA events: is the worker running?)")


async def show_figures(c: Client) -> None:
    """What a dispatcher sees: load per department and the zone's figures, from the read models."""
    overdue = await c.call("dispatcher", "GET", "/appeals?overdue=true")
    say(f"Overdue now: {len(overdue['appeals'])} case(s): "
        + ", ".join(f"{short(a['case_id'])} at {a['department']}" for a in overdue["appeals"]))
    for dept in ("bh-eco", "bh-hrss", "bh-planning"):
        f = await c.call("dispatcher", "GET", f"/departments/{dept}/load")
        say(f"  {dept:<12} open {f['open']} due soon {f['due_soon']} overdue {f['overdue']} closed today "
            f"{f['closed_today']} 响应率 {pct(f['response_rate'])} 按时答复率 {pct(f['on_time_rate'])} "
            f"满意率 {pct(f['satisfaction_rate'])}")
    k = await c.call("auditor", "GET", "/jurisdictions/tj-binhai/kpis")
    say(f"  滨海新区 rolled up over {len(k['departments'])} departments: open {k['open']} overdue {k['overdue']} "
        f"解决率 {pct(k['resolution_rate'])} 重办率 {pct(k['reopen_rate'])}")


def pct(rate: float | None) -> str:
    """A rate as officials read it; "—" when nothing was due yet (no denominator)."""
    return "—" if rate is None else f"{rate:.1%}"
