"""智能分拨: a model learnt from the store's own history suggests a category and a department for each
live appeal, names its duplicates, and is replaced only by a model no worse; on the real database,
broker and Faust worker."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, expect
from sklearn.feature_extraction.text import TfidfVectorizer

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.base.textmodel import TextModel, fit, ngrams, prepare, tfidf
from suqiu.domain import hotspots
from suqiu.domain import routing as r
from suqiu.domain.model import Actor, Role
from suqiu.domain.refdata import Category, Department
from suqiu.service.commands import CommandRequest
from suqiu.service.routing import TrainingBusy, retrain_if_due
from suqiu.service.runtime import Runtime
from suqiu.store import routing as routing_store
from tests.conftest import T0, Api, run_cli
from tests.support.board import sign_in
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, eventually, query

# Each department's own matters, with the category they come under.
MATTERS = {
    "bh-market": ("market", ["营业执照变更登记", "食品经营许可证延续", "企业名称变更核准", "个体工商户注销", "商标质押登记"]),
    "bh-hrss": ("labor", ["社保缴费基数核定", "稳岗补贴申领", "劳动合同纠纷调解", "职业技能培训补贴", "工伤认定进度"]),
    "bh-planning": ("land_planning", ["建设工程规划许可证", "用地红线调整", "容积率核定", "规划条件核实", "土地出让手续"]),
    "bh-tax": ("tax", ["增值税留抵退税", "发票领用额度", "研发费用加计扣除", "跨区税务迁移", "印花税申报"]),
}
ASKS = ["办理进度缓慢，请协调", "材料已提交两周仍无回复", "希望明确办理时限", "窗口要求补充材料不清楚", "咨询具体政策口径"]
IMPORTER = Actor("tj-binhai", Role.SYSTEM, person=r.HISTORY_IMPORT)


def appeal_text(rng: random.Random, department: str) -> tuple[str, str]:
    matter = rng.choice(MATTERS[department][1])
    return f"关于{matter}的问题", f"我公司{matter}{rng.choice(ASKS)}，联系人已多次沟通。编号{rng.randint(1000, 9999)}。"


def history(n: int, *, first_day: int, rotated: bool = False, seed: int = 7) -> list[CommandRequest]:
    """`n` answered cases, one a day back from `first_day` days before T0; `rotated` labels each
    with the next department's matters (a history that teaches the wrong thing)."""
    rng = random.Random(seed)
    names = sorted(MATTERS)
    out = []
    for i in range(n):
        department = names[i % len(names)]
        title, content = appeal_text(rng, names[(i + 1) % len(names)] if rotated else department)
        at = T0 - timedelta(days=first_day, minutes=i * 7)
        out.append(CommandRequest("import_case", f"hist-{seed}-{i}", IMPORTER, {
            "enterprise": {"uscc": "91120116MA05JQ2X9U", "name": "天津某某制造有限公司"}, "channel": "hotline",
            "category": MATTERS[department][0], "priority": "normal", "jurisdiction": "tj-binhai", "title": title,
            "content": content, "source_system": "old-12345", "source_ref": f"OLD-{seed}-{i}",
            "submitted_at": at.isoformat(), "department": department,
            "replied_at": (at + timedelta(days=1)).isoformat(), "reply": "已办理",
            "closed_at": (at + timedelta(days=2)).isoformat(), "outcome": "resolved"}))
    return out


async def classify(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        import contextlib
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return run_cli(["--log-level", "WARNING", "classify", *argv])

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def suggestion(api: Api, case_id: str) -> dict[str, Any]:
    view: Any = None
    for _ in range(200):
        status, view = await api.call("dispatcher", "GET", f"/appeals/{case_id}")
        if status == 200 and view["routing"] is not None:
            return dict(view["routing"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no routing suggestion on {case_id}: {view}")


async def test_a_model_learnt_from_history_suggests_names_duplicates_and_keeps_the_better_one(
        topics: Settings, runtime: Runtime, clock: ManualClock, api: Api, browser: Browser,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in topics.to_env().items():
        monkeypatch.setenv(name, value)
    code, _, err = await classify("train")
    assert code == 2 and "too little history to train: 0 answered cases" in err and "200 needed" in err

    answers = await runtime.service.run(history(240, first_day=60))
    assert all(not isinstance(a, Exception) for a in answers)
    # Auto-dispatch is on for tax matters from a score of 0.3 (SUQIU_AUTO_DISPATCH=tax=0.3).
    async with faust_worker(dataclasses.replace(topics, auto_dispatch={"tax": 0.3}), clock):
        await eventually(lambda: query(topics, "SELECT count(*) FROM case_view")[0][0], lambda n: n == 240)
        code, out, err = await classify("train")
        assert code == 0, (out, err)
        assert "department: accuracy" in out and "macro-F1" in out and "active: first model" in out
        first = json.loads((await classify("show", "--json"))[1])[0]
        assert first["active"] and first["cases"] == 192 and first["metrics"]["held_out"] == 48
        assert first["metrics"]["department"]["top3"] >= 0.95 and set(first["metrics"]["department"]["per_class"]) \
            == set(MATTERS)

        # A live appeal is scored: the suggestion is an event of its history, before any dispatch.
        live = await api.submit(title="营业执照变更登记办不下来", content="我公司营业执照变更登记材料已提交两周，仍无回复。")
        routing = await suggestion(api, live["case_id"])
        assert routing["model"] == first["version"]
        assert routing["departments"][0]["code"] == "bh-market" and routing["categories"][0]["code"] == "market"
        assert len(routing["departments"]) == 3 and routing["departments"][0]["score"] > 0.5
        assert routing["duplicates"] == []
        assert "routing" not in (await api.call("enterprise", "GET", f"/appeals/{live['case_id']}"))[1]
        events = (await api.call("auditor", "GET", f"/appeals/{live['case_id']}/history"))[1]["events"]
        assert [(e["event_type"], e["actor"]["role"], e["actor"]["person"]) for e in events] == [
            ("AppealSubmitted", "intake", None), ("RoutingSuggested", "system", "routing")]
        assert events[1]["data"]["departments"][0] == routing["departments"][0]

        # The same problem again, by web this time (重复件): named with its similarity.
        await caught_up(topics, live["case_id"])
        again = await api.submit(channel="web", title="营业执照变更登记，办不下来！",
                                 content="我公司的营业执照变更登记材料已提交两周了，仍然没有回复。")
        dup = (await suggestion(api, again["case_id"]))["duplicates"]
        assert [d["case_id"] for d in dup] == [live["case_id"]] and dup[0]["similarity"] >= r.DUPLICATE_SIMILARITY
        await api.ok("dispatcher", again["case_id"], "dispatch", department="bh-hrss")  # before anyone noticed

        # Hostile text is scored like any other.
        emoji = await api.submit(title="😀" * 200, content="😀" * 10_000)
        assert (await suggestion(api, emoji["case_id"]))["model"] == first["version"]

        # On the board: the suggestion with one click per department, and the duplicate named.
        d = await sign_in(browser, api, "dispatcher")
        await d.page.goto(f"{api.base}/board/cases/{again['case_id']}")
        panel = d.page.locator("#routing")
        await expect(panel).to_contain_text("滨海新区市场监督管理局")
        assert await d.page.locator(f"#duplicates a[href='/board/cases/{live['case_id']}']").count() == 1
        await d.page.goto(f"{api.base}/board/cases/{emoji['case_id']}")
        first_choice = (await suggestion(api, emoji["case_id"]))["departments"][0]["code"]
        await d.page.click(f"#routing button[data-department='{first_choice}']")
        await expect(d.page.locator("#routing .result").first).to_have_text("已提交")
        assert (await api.call("dispatcher", "GET", f"/appeals/{emoji['case_id']}"))[1]["department"] == first_choice
        assert d.errors == []

        # Auto-dispatch: a tax matter goes to the first suggestion, by the system, after it.
        tax = await api.submit(category="tax", title="增值税留抵退税进度", content="我公司增值税留抵退税申请已提交一个月。")
        await suggestion(api, tax["case_id"])
        done = await eventually(lambda: query(topics, "SELECT event_type FROM events WHERE case_id = %s ORDER BY seq",
                                              tax["case_id"]), lambda rows: len(rows) == 3)
        assert [e for (e,) in done] == ["AppealSubmitted", "RoutingSuggested", "AppealDispatched"]
        view = (await api.call("dispatcher", "GET", f"/appeals/{tax['case_id']}"))[1]
        assert view["status"] == "dispatched" and view["department"] == "bh-tax"
        assert (await api.call("dispatcher", "GET", f"/appeals/{live['case_id']}"))[1]["status"] == "submitted"

        # How good the suggestions were, from the events: the dispatcher followed the first one,
        # and the department it named replied.
        await api.ok("dispatcher", live["case_id"], "dispatch", department="bh-market")
        await api.ok("bh-market", live["case_id"], "accept")
        await api.ok("bh-market", live["case_id"], "reply", content="已办结变更登记。")
        await caught_up(topics, live["case_id"])
        status, quality = await api.call("auditor", "GET", "/routing/quality?from=2026-07-01&to=2026-08-01")
        assert status == 200 and quality["months"] == [quality["overall"] | {"month": "2026-07"}]
        assert quality["overall"] == {"suggested": 4, "dispatched": 4, "answered": 1, "followed_rate": 0.75,
                                      "top1_accuracy": 1.0, "top3_accuracy": 1.0}
        assert (await api.call("enterprise", "GET", "/routing/quality"))[0] == 403

        # A newer history that teaches the wrong departments: the model trained on it is worse on
        # the same newest cases, so the active one stays.
        answers = await runtime.service.run(history(600, first_day=200, rotated=True, seed=8))
        assert all(not isinstance(a, Exception) for a in answers)
        await eventually(lambda: query(topics, "SELECT count(*) FROM case_view")[0][0], lambda n: n == 844)
        code, out, _ = await classify("train")
        assert code == 3 and f"NOT active: kept {first['version']}: worse on the same held-out cases" in out, out
        models = json.loads((await classify("show", "--json"))[1])
        assert [m["active"] for m in models] == [False, True] and models[1]["version"] == first["version"]
        assert models[0]["metrics"]["active_model"]["version"] == first["version"]

        # 并件, two days on: the duplicate closes into the first case; its late assignment is released,
        # not late (the main case's response is the one that counts), and its enterprise follows the main case.
        clock.set(clock.now() + timedelta(days=2))
        dup_id, main_id = again["case_id"], live["case_id"]
        for target, code, field in ((dup_id, 400, "main_case_id"), ("no-such-case", 404, "main_case_id")):
            status, refused = await api.do("dispatcher", dup_id, "merge_into", main_case_id=target)
            assert (status, refused["error"]["details"]["field"]) == (code, field), refused
        assert (await api.do("bh-hrss", dup_id, "merge_into", main_case_id=main_id))[0] == 403
        await caught_up(topics, dup_id)
        before = (await api.call("dispatcher", "GET", "/departments/bh-hrss/load"))[1]["counts"]
        d = await sign_in(browser, api, "dispatcher")  # the session above has expired: two days have passed
        await d.page.goto(f"{api.base}/board/cases/{dup_id}")
        await d.page.click(f"#duplicates button[data-main='{main_id}']")
        await expect(d.page.locator("#duplicates .result")).to_have_text("已提交")
        status, refused = await api.do("dispatcher", emoji["case_id"], "merge_into", main_case_id=dup_id)
        assert status == 409 and refused["error"]["code"] == "invalid_state"
        await caught_up(topics, dup_id)
        merged = (await api.call("enterprise", "GET", f"/appeals/{dup_id}"))[1]
        assert (merged["status"], merged["outcome"], merged["merged_into"]) == ("closed", "duplicate", main_id)
        assert merged["main_case"]["status"] == "replied" and merged["main_case"]["reply"] == "已办结变更登记。"
        after = (await api.call("dispatcher", "GET", "/departments/bh-hrss/load"))[1]["counts"]
        assert after["released"] - before["released"] == 1 and before["response_due"] - after["response_due"] == 1
        assert (after["assigned"], after["handled"], after["responded_on_time"]) == (
            before["assigned"], before["handled"], before["responded_on_time"])

        # 热点: the 7 days up to now hold one hot issue, named by its own words; eight days on it is gone.
        status, hot = await api.call("auditor", "GET", "/hotspots?jurisdiction=tj")
        assert status == 200 and hot["appeals"] == 4, hot  # live, again, emoji, tax
        assert [(h["label"], h["enterprises"], h["appeals"]) for h in hot["hotspots"]] == [("营业执照变更登记办不下来", 1, 2)]
        assert sorted(c["case_id"] for c in hot["hotspots"][0]["cases"]) == sorted([dup_id, main_id])
        assert hot["hotspots"][0]["departments"] == {"bh-market": 1, "bh-hrss": 1}
        assert (await api.call("dispatcher", "GET", "/hotspots?jurisdiction=tj&from=2026-05-01&to=2026-06-01")
                )[1]["appeals"] == 240  # the first imported history, all in May
        await d.page.goto(f"{api.base}/board/hotspots?jurisdiction=tj")
        await expect(d.page.locator("tr[data-hotspot='1']")).to_contain_text("营业执照变更登记办不下来")
        await expect(d.page).to_have_title("热点问题 · 诉求")
        await expect(d.page.locator("tr[data-month='2026-07']")).to_contain_text("75.0%")  # 按建议派单
        await d.fits("hotspots")
        clock.set(clock.now() + timedelta(days=8))
        assert (await api.call("auditor", "GET", "/hotspots"))[1]["hotspots"] == []
        assert (await api.call("auditor", "GET", "/hotspots?jurisdiction=nowhere"))[0] == 404
        assert (await api.call("enterprise", "GET", "/hotspots"))[0] == 403

    assert await asyncio.to_thread(run_cli, ["--log-level", "WARNING", "replay", "verify", "--all"]) == 0
    # Imported history is never scored: four live appeals, four suggestions.
    assert query(topics, "SELECT count(*) FROM events WHERE event_type = 'RoutingSuggested'")[0][0] == 4

    # A model changed in the database does not load, and the next training replaces it.
    query(topics, "UPDATE routing_models SET model = overlay(model PLACING '\\x00'::bytea FROM 200) WHERE active")
    assert await runtime.router.model() is None
    code, out, _ = await classify("train")
    assert f"the active model {first['version']} does not verify: replaced" in out

    # Scheduled retraining (SUQIU_ROUTING_RETRAIN_DAYS) goes by the newest model's age in the store,
    # and one training runs at a time.
    master = runtime.subjects.master
    async with runtime.pool.connection() as conn:
        later = (await routing_store.models(conn))[0].trained_at + timedelta(days=2)  # the CLI ran on real time
    assert await retrain_if_due(runtime.pool, runtime.context, master, later, timedelta(days=3)) is None
    async with runtime.pool.connection() as conn:
        assert await routing_store.try_training_lock(conn)
        with pytest.raises(TrainingBusy):
            await retrain_if_due(runtime.pool, runtime.context, master, later, timedelta(days=1))
        await routing_store.training_unlock(conn)
    again_trained = await retrain_if_due(runtime.pool, runtime.context, master, later, timedelta(days=1))
    assert again_trained is not None and again_trained.info.trained_at == later


def test_only_departments_and_categories_in_use_are_suggested() -> None:
    departments = {"a": Department("a", "甲", "tj"), "b": Department("b", "乙", "tj", merged_into="c"),
                   "c": Department("c", "丙", "tj"), "d": Department("d", "丁", "tj", dissolved=True),
                   "e": Department("e", "戊", "tj")}
    scored = [r.Scored("b", 0.5), r.Scored("d", 0.3), r.Scored("c", 0.1), r.Scored("a", 0.05), r.Scored("e", 0.04)]
    assert r.suggestable_departments(departments, scored) == (r.Scored("c", 0.5), r.Scored("a", 0.05),
                                                              r.Scored("e", 0.04))
    assert r.label_department(departments, "b") == "c" and r.label_department(departments, "d") is None
    categories = {"x": Category("x", "甲"), "y": Category("y", "乙", retired=True)}
    assert r.suggestable_categories(categories, [r.Scored("y", 0.9), r.Scored("x", 0.1)]) == (r.Scored("x", 0.1),)


def test_duplicates_are_near_identical_texts_whatever_their_width_and_punctuation() -> None:
    text = "A3区大道西行便道破损，影响车辆出入"
    others = [("same", "Ａ３区大道西行便道破损, 影响车辆出入！"), ("other", "增值税留抵退税进度"),
              ("close", "A3区大道西行便道破损严重影响车辆出入")]
    found = r.duplicates_of(r.shingles(text), [(c, r.shingles(t)) for c, t in others])
    assert [d.case_id for d in found] == ["same", "close"] and found[0].similarity == 1.0
    assert r.duplicates_of(r.shingles(""), [("x", r.shingles(""))]) == ()


def test_a_worse_model_is_named_with_the_figures_that_are_worse() -> None:
    good = {h: {"accuracy": 0.9, "macro_f1": 0.8, "top3": 0.99} for h in r.HEADS}
    worse = {**good, "department": {"accuracy": 0.9, "macro_f1": 0.7, "top3": 0.99}}
    assert r.worse_than_active(good, good) == []
    assert r.worse_than_active(worse, good) == ["department macro_f1 0.7000 < 0.8000"]


def test_a_stored_model_scores_as_scikit_learn_and_never_unpickles() -> None:
    rng = random.Random(3)
    names = sorted(MATTERS)
    texts, labels = [], []
    for i in range(400):
        title, content = appeal_text(rng, names[i % 4])
        texts.append(title + "\n" + content)
        labels.append(names[i % 4])
    # A number's mark is no word; width and case fold; white space runs become one space.
    assert prepare("请回电\x1aP0\x1a  Ａ３区\n\n便道") == "请回电 a3区 便道"
    texts += ["", "a", "\x00\x00  b", "😀" * 5]  # no n-gram runs across texts, however short
    prepared = [prepare(t) for t in texts]
    vocabulary, idf, x = tfidf(prepared)
    # The features scikit-learn's TfidfVectorizer gives on the same vocabulary, in training and in scoring.
    vec = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, vocabulary={t: i for i, t in enumerate(vocabulary)})
    assert abs(vec.fit_transform(prepared) - x).max() < 1e-6 and np.abs(vec.idf_ - idf).max() < 1e-5
    model = TextModel.from_bytes(fit(texts[:300], {"department": labels[:300]}).to_bytes())
    vec = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, vocabulary={t: i for i, t in enumerate(model.vocabulary)})
    vec.fit([prepare(t) for t in texts[:300]])
    theirs = vec.transform([prepare(t) for t in texts[300:]]).toarray()
    ours = np.zeros_like(theirs)
    for row, (cols, vals) in enumerate(model.features(texts[300:])):
        ours[row, cols] = vals
    assert np.abs(ours - theirs).max() < 1e-6
    # Hostile text: NUL, emoji, 256 KiB of one character, nothing at all.
    ranked = model.ranked_all(["\x00" * 10, "😀" * 10_000, "一" * 262_144, ""])["department"]
    assert all(len(row) == 4 and abs(sum(s for _, s in row) - 1) < 1e-6 for row in ranked)
    # An npz holding a pickled object is refused, not loaded.
    out = io.BytesIO()
    np.savez(out, format=np.array([1]), heads=np.array([], dtype=str), idf=np.zeros(1, np.float32),
             vocabulary=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        TextModel.from_bytes(out.getvalue())


def test_quality_compares_with_who_finally_replied_as_the_organisation_stands_today() -> None:
    departments = {"a": Department("a", "甲", "tj"), "b": Department("b", "乙", "tj", merged_into="a"),
                   "c": Department("c", "丙", "tj")}
    got = r.quality([r.Outcome("2026-07", ("a", "c"), "b", "b"),  # followed (b is a now), right
                     r.Outcome("2026-07", ("c", "a"), "a", "a"),  # not followed, top-3 only
                     r.Outcome("2026-08", ("c",), None, None),  # neither dispatched nor answered yet
                     r.Outcome("2026-08", (), "c", "c")], departments)  # named no department: not counted
    assert got["months"] == [
        {"month": "2026-07", "suggested": 2, "dispatched": 2, "answered": 2, "followed_rate": 0.5,
         "top1_accuracy": 0.5, "top3_accuracy": 1.0},
        {"month": "2026-08", "suggested": 1, "dispatched": 0, "answered": 0, "followed_rate": None,
         "top1_accuracy": None, "top3_accuracy": None}]
    assert got["overall"]["suggested"] == 3 and got["overall"]["top1_accuracy"] == 0.5


def test_auto_dispatch_is_per_category_from_a_score_and_refuses_a_bad_setting() -> None:
    best = (r.Scored("bh-tax", 0.8), r.Scored("bh-market", 0.1))
    assert r.auto_dispatch_to("tax", best, {"tax": 0.8}) == "bh-tax"
    assert r.auto_dispatch_to("tax", best, {"tax": 0.81}) is None
    assert r.auto_dispatch_to("approval", best, {"tax": 0.5}) is None and r.auto_dispatch_to("tax", (), {"tax": 0.5}) is None
    assert Settings.from_env({"SUQIU_AUTO_DISPATCH": "tax=0.9, approval=0.85"}).auto_dispatch == {
        "tax": 0.9, "approval": 0.85}
    for bad in ("tax", "tax=high", "tax=0", "tax=1.5", "=0.5"):
        with pytest.raises(ValueError, match="SUQIU_AUTO_DISPATCH"):
            Settings.from_env({"SUQIU_AUTO_DISPATCH": bad})


def test_hot_issues_group_by_their_own_words_and_rank_by_enterprises() -> None:
    at = T0 - timedelta(days=1)
    texts = [("营业执照变更登记办不下来", "材料已提交两周"), ("营业执照变更登记太慢", "一直没有进展"),
             ("关于营业执照变更登记", "迟迟不办"), ("增值税留抵退税进度", "申请已提交一个月"),
             ("留抵退税何时到账", "增值税留抵退税迟迟未到账"), ("A3区大道西行便道破损", "影响出入")]
    # The tax matter comes from two enterprises three times, the licence matter from three.
    usccs = ["u1", "u2", "u3", "u1", "u2", "u4"]
    appeals = [hotspots.Appeal(f"c{i}", at + timedelta(hours=i), usccs[i], "bh-market", "market", t, c)
               for i, (t, c) in enumerate(texts)]
    appeals.append(hotspots.Appeal("c6", at + timedelta(hours=9), "u2", None, "tax", "增值税留抵退税还没到账", "增值税留抵退税申请已提交"))
    found = hotspots.hotspots(appeals)
    assert [(h["label"], h["enterprises"], h["appeals"]) for h in found] == [
        ("营业执照变更登记", 3, 3), ("增值税留抵退税", 2, 3)]
    assert [c["case_id"] for c in found[1]["cases"]] == ["c6", "c4", "c3"]
    assert found[1]["departments"] == {"bh-market": 2}
    assert hotspots.hotspots([]) == [] and hotspots.label([]) == ""
