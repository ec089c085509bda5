"""What the API's and the board's handlers share: the app's keys, the HTTP status of each
refusal code, the JSON answer, the route table's types, and reading a case a key may read."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from suqiu.domain import Case, DomainError, access, hotspots, inputs
from suqiu.domain.enterprises import file_figures
from suqiu.domain.gatherings import Gathering
from suqiu.domain.periods import Period
from suqiu.domain.personal import Personal
from suqiu.domain.refdata import Department, subtree
from suqiu.projections import queries
from suqiu.projections.account import XLSX, account, account_xlsx
from suqiu.projections.report import display_name
from suqiu.schemas.codec import to_json_text, to_json_value
from suqiu.service.runtime import Runtime
from suqiu.store import gatherings as gatherings_store
from suqiu.store.access_log import AccessLog

MAX_BODY = 256 * 1024
STATUS = {
    "invalid_input": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "invalid_state": 409,
    "conflict": 409, "idempotency_mismatch": 409, "too_large": 413, "calendar_unknown": 503, "unavailable": 503,
    "method_not_allowed": 405, "unsupported_encoding": 415, "headers_too_large": 431,
}
INTERNAL = "internal"  # the one 500: a fault of ours, logged with its traceback
RUNTIME = web.AppKey("runtime", Runtime)
PRINCIPAL = web.RequestKey("principal", access.Principal)
KEY_PREFIX = web.RequestKey("key_prefix", str)  # the authenticated key's first characters, for the audit trail
ACCESS_LOG = web.AppKey("access_log", AccessLog)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(code: str, message: str, **details: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, "details": details}}, STATUS.get(code, 500))


def json_response(body: Any, status: int = 200) -> web.Response:
    try:
        text = to_json_text(body)
    except TypeError:  # a refusal quoting what orjson cannot write (an integer past 64 bits, a lone surrogate)
        text = json.dumps(to_json_value(body), ensure_ascii=True, default=repr)
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8")


ENCODINGS = "a body is sent as it is, or with Content-Encoding gzip or deflate"
TEXT_MAX = 100  # a search text: longer ones are not a name or a number anyone types


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter: its name, JSON Schema and meaning (for the handler and the OpenAPI document)."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the contract; the router and GET /v1/openapi.json are both built from ROUTES.

    `body`: "command" (any lifecycle command), or the name of its schema in the document
    (Submit, Erasure); `public`: no key.
    """

    method: str
    path: str
    handler: Handler
    summary: str
    who: str
    body: str | None = None
    query: tuple[Param, ...] = ()
    public: bool = False
    success: int = 200
    media: str = "application/json"  # what a success answers with


async def readable_case(request: web.Request) -> Case:
    """The case, if this key may read it (suqiu.domain.access.check_read)."""
    rt = request.app[RUNTIME]
    case = await rt.service.load(inputs.identifier(request.match_info["case_id"], "case_id"))
    if case.seq == 0:
        raise DomainError("not_found", f"no case {case.case_id}", case_id=case.case_id)
    principal = request[PRINCIPAL]
    departments = rt.context.departments
    held = False
    if access.read_needs_history(case, principal, departments):
        async with rt.pool.connection() as conn:
            held = await queries.held_by(conn, case.case_id, access.answers_for(principal, departments))
    access.check_read(case, principal, departments, held=held)
    return case


async def readable_enterprise_file(request: web.Request) -> dict[str, Any]:
    """The file of the path's {uscc}, if this key may read it (access.check_enterprise_file)."""
    rt = request.app[RUNTIME]
    uscc = inputs.identifier(request.match_info["uscc"], "uscc")
    access.check_enterprise_file(request[PRINCIPAL], uscc)
    async with rt.pool.connection() as conn:
        found = await queries.enterprise_file(conn, uscc, rt.clock.now())
    if found is None:
        if uscc not in request[PRINCIPAL].usccs:
            raise DomainError("not_found", f"no enterprise {uscc}", uscc=uscc)
        found = {"uscc": uscc, "name": "", **file_figures([]), "open": [], "gatherings": [], "appeals": []}
    return found


async def hot_issues_of(request: web.Request) -> dict[str, Any]:
    """热点: the appeals of a jurisdiction's subtree in a window (to: now, from: 7 days before `to`,
    unless given) grouped by what they are about, hottest first (suqiu.domain.hotspots)."""
    rt = request.app[RUNTIME]
    ctx = rt.context
    access.check_figures(request[PRINCIPAL], None, ctx.departments)
    q = request.query
    code = inputs.identifier(q.get("jurisdiction") or rt.settings.system_id, "jurisdiction")
    if code not in ctx.jurisdictions:
        raise DomainError("not_found", f"no jurisdiction {code}", jurisdiction=code, field="jurisdiction")
    start, end = Period.parse(q.get("from") or None, q.get("to") or None).instants()
    end = end or rt.clock.now()
    start = start or end - hotspots.WINDOW
    async with rt.pool.connection() as conn:
        appeals = await queries.window_appeals(conn, subtree(ctx.jurisdictions, code), start, end)
    return {"jurisdiction": code, "from": start, "to": end, "appeals": len(appeals),
            "hotspots": hotspots.hotspots(appeals)}


async def gathering_of(request: web.Request) -> Gathering:
    """The path's {gathering_id}, recorded."""
    rt = request.app[RUNTIME]
    gathering_id = inputs.identifier(request.match_info["gathering_id"], "gathering_id")
    async with rt.pool.connection() as conn:
        found = await gatherings_store.get(conn, gathering_id)
    if found is None:
        raise DomainError("not_found", f"no gathering {gathering_id}", gathering_id=gathering_id)
    return found


async def readable_account(request: web.Request) -> tuple[Gathering, list[dict[str, Any]], dict[str, int]]:
    """The path's gathering with its account's lines and summary now, if this key may read it."""
    access.check_gathering_read(request[PRINCIPAL])
    found = await gathering_of(request)
    rt = request.app[RUNTIME]
    async with rt.pool.connection() as conn:
        lines, summary = await account(conn, found, rt.clock.now())
    return found, lines, summary


def account_download(request: web.Request, found: Gathering, lines: list[dict[str, Any]],
                     summary: dict[str, int]) -> web.Response:
    """The account as an xlsx attachment (the API's and the board's download)."""
    rt = request.app[RUNTIME]
    body = account_xlsx(found, lines, summary, lambda code: display_name(rt.context.departments, code),
                        rt.clock.now())
    return web.Response(body=body, content_type=XLSX, headers={
        "Content-Disposition": f'attachment; filename="account-{found.gathering_id}.xlsx"'})


async def personal_for(request: web.Request, case: Case) -> tuple[Personal | None, bool]:
    """`case`'s personal fields opened (None: erased) and whether this key reads them plain."""
    rt = request.app[RUNTIME]
    plain = access.sees_personal(case, request[PRINCIPAL], rt.context.departments)
    return (await rt.personal.opened([case]))[case.case_id], plain


def readable_department(request: web.Request) -> Department:
    """The department of the path's {code}, if this key may read its figures (access.check_figures)."""
    rt = request.app[RUNTIME]
    code = inputs.identifier(request.match_info["code"], "code")
    department = rt.context.departments.get(code)
    if department is None:
        raise DomainError("not_found", f"no department {code}", department=code)
    access.check_figures(request[PRINCIPAL], code, rt.context.departments)
    return department
