"""The enterprise's file (企业服务档案): its appeals and its own figures, equal to a count made
independently from each case's own record, and readable by the enterprise alone among the
enterprises."""

from __future__ import annotations

from suqiu.base.config import Settings
from suqiu.service.runtime import Runtime
from tests.conftest import ENTERPRISE_USCC, OTHER_USCC, Api
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up


async def close(api: Api, case: str, outcome: str, rating: str | None) -> None:
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    await api.ok("bh-market", case, "accept")
    await api.ok("bh-market", case, "reply", content="已办理")
    await api.ok("dispatcher", case, "close", outcome=outcome)
    if rating:
        await api.ok("enterprise", case, "feedback", rating=rating)


async def test_the_file_holds_every_appeal_and_figures_equal_an_independent_count(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    channels = ["hotline", "web", "visit", "symposium", "web", "hotline"]
    mine = [(await api.submit(channel=ch))["case_id"] for ch in channels]
    theirs = (await api.submit(enterprise={"uscc": OTHER_USCC, "name": "天津某某制造有限公司"}))["case_id"]
    async with faust_worker(topics, runtime.clock):
        await close(api, mine[0], "resolved", "satisfied")
        await close(api, mine[1], "explained", "unsatisfied")
        await close(api, mine[2], "resolved", "basically_satisfied")
        await close(api, mine[3], "unresolvable", None)
        await api.ok("enterprise", mine[4], "withdraw", reason="已自行解决")
        for case in [*mine, theirs]:
            await caught_up(topics, case)
        status, file = await api.call("enterprise", "GET", f"/enterprises/{ENTERPRISE_USCC}")
    assert status == 200 and {a["case_id"] for a in file["appeals"]} == set(mine)

    # Independently: each case as GET /v1/appeals/{id} gives it, counted by the definitions.
    cases = [(await api.call("dispatcher", "GET", f"/appeals/{c}"))[1] for c in mine]
    handled = [c for c in cases if c["status"] == "closed" and c["outcome"] in ("resolved", "explained", "unresolvable")]
    rated = [c for c in cases if c["rating"]]
    assert file["resolution_rate"] == round(sum(c["outcome"] == "resolved" for c in handled) / len(handled), 4)
    assert file["satisfaction_rate"] == round(
        sum(c["rating"] in ("satisfied", "basically_satisfied") for c in rated) / len(rated), 4)
    assert file["open"] == [c["case_id"] for c in sorted(cases, key=lambda c: c["submitted_at"], reverse=True)
                            if c["status"] not in ("closed", "withdrawn")]
    assert file["counts"]["appeals"] == 6 and file["channels"] == {"hotline": 2, "symposium": 1, "visit": 1, "web": 2}
    assert (file["resolution_rate"], file["satisfaction_rate"]) == (0.5, 0.6667)  # 2 of 4 handled, 2 of 3 rated

    assert (await api.call("other-enterprise", "GET", f"/enterprises/{ENTERPRISE_USCC}"))[0] == 404
    assert (await api.call("bh-market", "GET", f"/enterprises/{ENTERPRISE_USCC}"))[0] == 403
    assert (await api.call("dispatcher", "GET", f"/enterprises/{OTHER_USCC}"))[1]["counts"]["appeals"] == 1
    assert (await api.call("auditor", "GET", "/enterprises/91110000000000000X"))[0] == 404
