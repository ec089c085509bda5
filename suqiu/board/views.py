"""The board's pages and actions: each asks the API's query functions and the command path.

Pages are rendered on the server (Jinja2); the browser runs board.js to refresh the live parts
every few seconds, draw the charts with Plotly and send actions without a reload.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import structlog
from aiohttp import web

from suqiu.board.sessions import Session, Sessions
from suqiu.domain import DomainError, access, inputs, refdata, routing
from suqiu.domain.access import Principal
from suqiu.domain.gatherings import KINDS
from suqiu.domain.labels import (
    CHANNEL_NAMES,
    CLOCK_NAMES,
    DEADLINE_NAMES,
    EVENT_NAMES,
    RATE_NAMES,
    RATING_NAMES,
    ROLE_NAMES,
    SLA_NAMES,
    STATE_NAMES,
    STEPS,
    refusal,
)
from suqiu.domain.model import Role, Status
from suqiu.domain.org import tree_order
from suqiu.domain.periods import Grain, Period
from suqiu.domain.personal import labelled
from suqiu.domain.refdata import Department, ancestors, departments_in, subtree
from suqiu.domain.sla import CHINA
from suqiu.http.common import (
    KEY_PREFIX,
    PRINCIPAL,
    RUNTIME,
    STATUS,
    TEXT_MAX,
    account_download,
    hot_issues_of,
    readable_account,
    readable_case,
    readable_department,
    readable_enterprise_file,
)
from suqiu.projections import queries
from suqiu.replay import history as audit
from suqiu.replay.verify import ChainChecker
from suqiu.schemas.codec import to_json_value
from suqiu.service.commands import CommandRequest
from suqiu.store import events as store
from suqiu.store.keys import digest

log = structlog.get_logger(__name__)
COOKIE = "suqiu_board"
LOGIN_COOKIE = "suqiu_board_login"  # the sign-in form's CSRF token
SESSIONS = web.AppKey("board_sessions", Sessions)
SESSION = web.RequestKey("board_session", Session)
TOKEN = web.RequestKey("board_token", str)
# The board's actions (催办, 转办) and the form fields each sends as its command's body.
ACTION_FIELDS = {"dispatch": ("department",), "urge": ("note",), "transfer": ("department", "reason"),
                 "merge_into": ("main_case_id",)}
ACTIONS = tuple(ACTION_FIELDS)
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]
_templates = jinja2.Environment(loader=jinja2.PackageLoader("suqiu.board", "templates"), autoescape=True,
                                undefined=jinja2.StrictUndefined)


def _cst(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An instant (or its ISO text, as the audit entries carry it) in Beijing time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return "" if value is None else value.astimezone(CHINA).strftime(fmt)


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _past(due: datetime | None, now: datetime) -> str:
    """How far past its deadline a case is, in the words a supervisor reads."""
    if due is None or due > now:
        return ""
    minutes = (now - due).total_seconds() / 60
    if minutes < 60:  # "超期 0.0 小时" read as on time
        return f"超期 {max(1, round(minutes))} 分钟"
    hours = minutes / 60
    return f"超期 {hours / 24:.1f} 天" if hours >= 48 else f"超期 {hours:.1f} 小时"


# A sealed number in a title shows as [电话] or [证件号]: the board sees no personal data.
_templates.filters.update(cst=_cst, pct=_pct, personal=labelled)
_templates.globals.update(STATE_NAMES=STATE_NAMES, SLA_NAMES=SLA_NAMES, CLOCK_NAMES=CLOCK_NAMES,
                          DEADLINE_NAMES=DEADLINE_NAMES, RATE_NAMES=RATE_NAMES, ROLE_NAMES=ROLE_NAMES, past=_past,
                          CHANNELS=CHANNEL_NAMES, RATINGS=RATING_NAMES, KINDS=KINDS, EVENT_NAMES=EVENT_NAMES)


def render(name: str, status: int = 200, **context: Any) -> web.Response:
    return web.Response(text=_templates.get_template(name).render(**context), status=status,
                        content_type="text/html", charset="utf-8")


def page(handler: Page) -> Page:
    """A signed-in page: the session's key decides who reads, exactly as the bearer key does on /v1."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE, "")
        rt = request.app[RUNTIME]
        session = await request.app[SESSIONS].find(token, rt.clock.now()) if token else None
        info = await rt.keys.by_hash(session.key_hash) if session else None
        if session is None or info is None:
            raise web.HTTPSeeOther("/board/login")
        request[PRINCIPAL], request[SESSION], request[TOKEN] = info.principal, session, token
        request[KEY_PREFIX] = info.prefix
        try:
            return await handler(request)
        except DomainError as exc:
            said = refusal(exc.code, exc.message, exc.details.get("field"))
            if request.method == "POST":  # board.js shows it inline, in the API's error shape
                log.info("board action refused", code=exc.code, reason=exc.message, path=request.path)
                return web.json_response({"error": {"code": exc.code, "message": said, "details": exc.details}},
                                         status=STATUS.get(exc.code, 500))
            return render("error.html", STATUS.get(exc.code, 500), message=said, detail=exc.message,
                          **_frame(request))

    return wrapped


def _frame(request: web.Request) -> dict[str, Any]:
    """What every page's frame shows: who is signed in, and the CSRF token for its forms."""
    principal: Principal = request[PRINCIPAL]
    names = request.app[RUNTIME].context.departments
    dept = principal.actor.department
    who = ROLE_NAMES.get(principal.actor.role.value, principal.actor.role.value)
    if dept:
        who += f" · {names[dept].name if dept in names else dept}"
    # Jurisdiction-wide pages (热点) only for those who read the jurisdiction's figures.
    wide = access.may_read_figures(principal, None, names)
    return {"who": who, "csrf": request[SESSION].csrf, "wide": wide}


def _login_page(error: str | None = None, status: int = 200) -> web.Response:
    """The sign-in form with a fresh CSRF token, in the form and in a cookie (double submit): a
    page elsewhere can post to /board/login but cannot read or set the cookie."""
    token = secrets.token_urlsafe(24)
    response = render("login.html", status, error=error, csrf=token)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/board/login", secure=True,
                        max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page()


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    sent, kept = str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not hmac.compare_digest(sent.encode(), kept.encode()):
        log.warning("board sign-in refused: no matching CSRF token")
        return _login_page("表单已过期，请重新登录", 403)
    key = str(form.get("key", "")).strip()
    rt = request.app[RUNTIME]
    info = await rt.keys.resolve(key) if key and key.isascii() and key.isprintable() else None
    if info is None:
        log.warning("board sign-in refused", key_prefix=key[:12] if key.isascii() else None)
        return _login_page("密钥无效或已吊销", 401)
    token, _ = await request.app[SESSIONS].create(digest(key), rt.clock.now())
    log.info("board sign-in", key_prefix=info.prefix, role=info.principal.actor.role.value)
    response = web.HTTPSeeOther("/board/")
    # Secure always: browsers send it over https, and over http only to localhost (a trustworthy origin).
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/board", secure=True)
    response.del_cookie(LOGIN_COOKIE, path="/board/login")
    raise response


@page
async def logout(request: web.Request) -> web.Response:
    _check_csrf(request, await request.post())
    await request.app[SESSIONS].end(request[TOKEN])
    response = web.HTTPSeeOther("/board/login")
    response.del_cookie(COOKIE, path="/board")
    raise response


def _check_csrf(request: web.Request, form: Any) -> None:
    sent = str(form.get("csrf", "") or request.headers.get("X-CSRF-Token", ""))
    if not hmac.compare_digest(sent.encode(), request[SESSION].csrf.encode()):
        raise DomainError("forbidden", "the form is stale or was not sent by the board (CSRF token)",
                          field="csrf", rule="board actions carry the session's CSRF token")


def _period(request: web.Request, today: date) -> Period:
    """The chosen period (from, to), this month when none is chosen."""
    q = request.query
    if "from" in q or "to" in q:
        chosen = Period.parse(q.get("from") or None, q.get("to") or None)
        if chosen.bounded:
            return chosen
    first = Grain.MONTH.start(today)
    return Period(first, Grain.MONTH.following(first))


def _scope(request: web.Request) -> tuple[list[str], str, str | None]:
    """The departments whose figures this key may read together, what to call them, and the
    jurisdiction chosen (`?jurisdiction=`, the root when none; None for a department's key)."""
    rt = request.app[RUNTIME]
    principal: Principal = request[PRINCIPAL]
    ctx = rt.context
    try:
        access.check_figures(principal, None, ctx.departments)
    except DomainError:
        own = principal.actor.department
        access.check_figures(principal, own, ctx.departments)
        assert own is not None
        return [own], ctx.departments[own].name if own in ctx.departments else own, None
    code = request.query.get("jurisdiction") or None
    if code is None:
        code = next(j for j in ctx.jurisdictions.values() if j.parent not in ctx.jurisdictions).code
    elif code not in ctx.jurisdictions:
        raise DomainError("not_found", f"没有辖区 {inputs.identifier(code, 'jurisdiction')}", jurisdiction=code)
    return departments_in(ctx.departments, subtree(ctx.jurisdictions, code)), ctx.jurisdictions[code].name, code


@page
async def overview(request: web.Request) -> web.Response:
    principal: Principal = request[PRINCIPAL]
    if principal.actor.role is Role.ENTERPRISE:
        # An enterprise has no figures to see: its own file (its appeals) is its board.
        usccs = sorted(principal.usccs)
        raise web.HTTPSeeOther(f"/board/enterprises/{usccs[0]}" if len(usccs) == 1 else "/board/search")
    context = await _overview(request)
    name = "overview_live.html" if request.query.get("part") == "live" else "overview.html"
    return render(name, **context, **_frame(request))


async def _overview(request: web.Request) -> dict[str, Any]:
    rt = request.app[RUNTIME]
    principal: Principal = request[PRINCIPAL]
    now = rt.clock.now()
    period = _period(request, now.astimezone(CHINA).date())
    members, scope_name, chosen = _scope(request)
    scope = access.list_scope(principal, None, rt.context.departments)
    visible = [d for d in access.visible_departments(principal, rt.context.departments, rt.context.departments)
               if d in members and rt.context.departments[d].active]
    async with rt.pool.connection() as conn:
        load = await queries.open_counts(conn, now)
        counted = refdata.members(rt.context.departments, rt.context.merged_on, members)  # and what merged into them
        kpis = {**queries.total_load(load, members), **await queries.performance(conn, counted, now, period)}
        before = await queries.performance(conn, counted, now, period.previous())
        days = await queries.series(conn, counted, now, period, Grain.DAY, with_handling=False) if period.fits_series(Grain.DAY) else []
        late = await queries.list_cases(conn, now, department=scope.department, usccs=scope.usccs,
                                        source_systems=scope.source_systems, overdue=True, open_only=True,
                                        order="next_due", limit=50, departments=members)
    late.sort(key=lambda r: (not r["supervised"], r["next_due"]))
    names = rt.context.departments
    rows = [{"code": d, "name": names[d].name, **load.get(d, queries.EMPTY_LOAD)} for d in visible]
    chart = {"x": [d["period"] for d in days], "assigned": [d["counts"]["assigned"] for d in days],
             "replied": [d["counts"]["replied"] for d in days],
             "breached": [d["counts"]["breached"] for d in days]}
    tree = rt.context.jurisdictions
    picker = [(j.code, "　" * (len(ancestors(tree, j.code)) - 1) + j.name) for j in tree_order(tree)]
    return {"now": now, "period": period, "scope_name": scope_name, "kpis": kpis, "before": before,
            "jurisdiction": chosen, "jurisdictions": picker if chosen else [],
            "rows": rows, "late": late, "chart": chart, "names": names,
            "period_to_shown": (period.end - timedelta(days=1)) if period.end else None}


@page
async def department(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    dept = readable_department(request)
    code = dept.code
    now = rt.clock.now()
    this_month = Grain.MONTH.start(now.astimezone(CHINA).date())
    year_ago = date(this_month.year - 1, this_month.month, 1)
    year = Period(Grain.MONTH.following(year_ago), Grain.MONTH.following(this_month))  # this month and 11 before
    async with rt.pool.connection() as conn:
        load = (await queries.open_counts(conn, now)).get(code, queries.EMPTY_LOAD)
        counted = refdata.members(rt.context.departments, rt.context.merged_on, [code])
        months = await queries.series(conn, counted, now, year, Grain.MONTH)
        cases = await queries.list_cases(conn, now, department=code, open_only=True, order="next_due", limit=200)
    principal: Principal = request[PRINCIPAL]
    actions = [a for a in ACTIONS if access.may_issue(principal, a)]
    chart = {"x": [m["period"] for m in months], "assigned": [m["counts"]["assigned"] for m in months],
             "replied": [m["counts"]["replied"] for m in months],
             "on_time_rate": [m["on_time_rate"] for m in months]}
    return render("department.html", dept=dept, load=load, months=months, cases=cases, now=now, chart=chart,
                  actions=actions, offer=_offers(principal), departments=_transfer_targets(rt.context.departments),
                  **_frame(request))


@page
async def case(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    current = await readable_case(request)
    stored, report = await _history(request, current.case_id)
    at_text = request.query.get("at", "")
    shown, later = None, None
    if at_text:
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            raise DomainError("invalid_input", f"at: {at_text[:40]!r} 不是时间", field="at") from None
        at = at if at.tzinfo else at.replace(tzinfo=CHINA)
        shown = audit.case_json(audit.as_of(stored, at=at), at)
        later = to_json_value(at.astimezone(UTC))  # events recorded after it are greyed out
    principal: Principal = request[PRINCIPAL]
    offer = _offers(principal)
    actions = offer(current.status)
    entries = [audit.entry(s) for s in stored]
    # The step bar: each step with the latest event that reached it (after a 重办, the new cycle's).
    reached = {x["event"]: x for x in entries}
    steps = [(label, reached.get(event)) for label, event in STEPS]
    template = "case_timeline.html" if request.query.get("part") == "timeline" else "case.html"
    file_link = current.enterprise is not None and access.may_read_enterprise_file(principal, current.enterprise.uscc)
    suggestion = current.routing if access.sees_routing(principal) else None
    return render(template, case=current, routing=suggestion, categories=rt.context.categories, entries=entries,
                  report=report, at=at_text, shown=shown, steps=steps, offer=offer, later=later,
                  actions=actions, now=rt.clock.now(), names=rt.context.departments, file_link=file_link,
                  current_department=refdata.current(rt.context.departments, current.department),
                  departments=_transfer_targets(rt.context.departments), **_frame(request))


def _offers(principal: Principal) -> Callable[[str], list[str]]:
    """The board's actions `principal` may take on a case in a given state: only what decide
    would allow now, asked from the domain's rule table."""
    return lambda status: [a for a in ACTIONS if access.may_issue(principal, a, Status(status))]


def _transfer_targets(departments: Mapping[str, Department]) -> list[Department]:
    """The departments a case can be sent to: the active ones (a retired one refuses it)."""
    return sorted((d for d in departments.values() if d.active), key=lambda d: d.code)


async def _history(request: web.Request, case_id: str) -> tuple[list[audit.Stored], Any]:
    """The stored events, decoded, and the chain verified over their stored bytes (replay verify)."""
    rt = request.app[RUNTIME]
    async with rt.pool.connection() as conn:
        rows = await store.read_history(conn, case_id)
    checker = ChainChecker(rt.codec)
    stored = []
    for row in rows:
        data = bytes(row.data)
        checker.feed(row.case_id, row.seq, data, bytes(row.hash), row.event_type)
        try:
            stored.append(audit.stored(rt.codec, data))
        except Exception:  # an altered event may not decode: the chain report names it
            continue
    return stored, checker.report


@page
async def export(request: web.Request) -> web.Response:
    current = await readable_case(request)
    stored, _ = await _history(request, current.case_id)
    entries = [audit.entry(s) for s in stored]
    kind = request.match_info["kind"]
    body = audit.to_jsonl(entries) if kind == "jsonl" else audit.to_csv(entries)
    media = "application/x-ndjson" if kind == "jsonl" else "text/csv"
    return web.Response(text=body, content_type=media, charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="{current.case_id}.{kind}"'})


@page
async def act(request: web.Request) -> web.Response:
    """An action from the board: the same command path, with the same refusals, as POST /v1/.../commands."""
    form = await request.post()
    _check_csrf(request, form)
    kind = str(form.get("type", ""))
    if kind not in ACTIONS:
        raise DomainError("invalid_input", f"type: the board sends {', '.join(ACTIONS)}", field="type")
    body = {k: str(form.get(k, "")) for k in ACTION_FIELDS[kind]}
    principal: Principal = request[PRINCIPAL]
    result = await request.app[RUNTIME].service.execute(CommandRequest(
        kind, str(uuid.uuid4()), principal.actor, body, case_id=request.match_info["case_id"], principal=principal))
    log.info("board action", case_id=result.case_id, command_id=result.command_id, type=kind, status=result.status)
    return web.json_response(result.as_dict())


@page
async def gathering(request: web.Request) -> web.Response:
    """A gathering's account (交账单), as GET /v1/gatherings/{id}/account gives it; `.xlsx` the workbook."""
    found, lines, summary = await readable_account(request)
    if request.path.endswith(".xlsx"):
        return account_download(request, found, lines, summary)
    return render("gathering.html", g=found, lines=lines, summary=summary,
                  names=request.app[RUNTIME].context.departments, **_frame(request))


@page
async def hot(request: web.Request) -> web.Response:
    """热点, as GET /v1/hotspots gives them, and how good 智能分拨 was in the same window
    (GET /v1/routing/quality)."""
    rt = request.app[RUNTIME]
    found = await hot_issues_of(request)
    async with rt.pool.connection() as conn:
        outcomes = await queries.routing_outcomes(conn, found["from"], found["to"])
    return render("hotspots.html", hot=found, quality=routing.quality(outcomes, rt.context.departments),
                  names=rt.context.departments, **_frame(request))


@page
async def enterprise(request: web.Request) -> web.Response:
    """An enterprise's file (企业服务档案), as GET /v1/enterprises/{uscc} gives it."""
    return render("enterprise.html", file=await readable_enterprise_file(request),
                  names=request.app[RUNTIME].context.departments, **_frame(request))


@page
async def search(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    principal: Principal = request[PRINCIPAL]
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in STATE_NAMES:
        raise DomainError("invalid_input", f"state: 未知状态 {state[:40]!r}", field="state")
    scope = access.list_scope(principal, q.get("department") or None, rt.context.departments)
    category = q.get("category") or None
    submitted = Period.parse(q.get("from") or None, q.get("to") or None)
    text = inputs.text(q.get("q", ""), "q", TEXT_MAX, required=False) or None
    now = rt.clock.now()
    async with rt.pool.connection() as conn:
        found = await queries.list_cases(conn, now, state=state, department=scope.department, usccs=scope.usccs,
                                         source_systems=scope.source_systems, text=text, category=category,
                                         submitted=submitted, limit=100)
    return render("search.html", found=found, q=q, now=now, names=rt.context.departments,
                  states=STATE_NAMES, categories=sorted(c for c in rt.context.categories if not rt.context.categories[c].retired),
                  departments=access.visible_departments(principal, rt.context.departments, rt.context.departments),
                  **_frame(request))


STATIC = resources.files("suqiu.board") / "static"


async def asset(request: web.Request) -> web.StreamResponse:
    """The board's own script and style, and plotly.js from the installed plotly package (no CDN)."""
    name = request.match_info["name"]
    if name == "plotly.min.js":
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    elif name in ("board.js", "board.css"):
        path = Path(str(STATIC / name))
    else:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})


def add_routes(app: web.Application) -> None:
    """The board under /board/, served by the API process: no extra service to deploy."""
    app[SESSIONS] = Sessions(app[RUNTIME].pool)
    r = app.router
    r.add_get("/board", to_board)
    r.add_get("/board/login", login_form)
    r.add_post("/board/login", login)
    r.add_post("/board/logout", logout)
    r.add_get("/board/", overview)
    r.add_get("/board/search", search)
    r.add_get("/board/gatherings/{gathering_id}", gathering)
    r.add_get("/board/gatherings/{gathering_id}/account.xlsx", gathering)
    r.add_get("/board/enterprises/{uscc}", enterprise)
    r.add_get("/board/hotspots", hot)
    r.add_get("/board/departments/{code}", department)
    r.add_get("/board/cases/{case_id}", case)
    r.add_get("/board/cases/{case_id}/export.{kind:jsonl|csv}", export)
    r.add_post("/board/cases/{case_id}/actions", act)
    r.add_get("/board/assets/{name}", asset)


async def to_board(request: web.Request) -> web.Response:
    """/board without its slash: the board's relative links need it."""
    raise web.HTTPSeeOther("/board/")

