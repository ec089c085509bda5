"""The HTTP API: JSON in, JSON out, every error in one shape, nothing stored on error."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import psycopg
import psycopg_pool
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from suqiu.base.metrics import CONTENT_TYPE
from suqiu.board.views import add_routes
from suqiu.domain import Case, DomainError, access, inputs, routing
from suqiu.domain.clocks import sla_status
from suqiu.domain.gatherings import (
    MAX_APPEALS,
    parse_gathering,
    same_record,
)
from suqiu.domain.model import Status
from suqiu.domain.org import Organisation
from suqiu.domain.periods import ALL_TIME, FIRST_YEAR, LAST_YEAR, Grain, Period
from suqiu.domain.personal import Personal, shown_enterprise, shown_text
from suqiu.domain.refdata import Member, current, departments_in, members, ranked_members, subtree
from suqiu.domain.sla import CHINA
from suqiu.http.common import (
    ACCESS_LOG,
    ENCODINGS,
    INTERNAL,
    KEY_PREFIX,
    MAX_BODY,
    PRINCIPAL,
    RUNTIME,
    STATUS,
    TEXT_MAX,
    Handler,
    Param,
    Route,
    account_download,
    error_response,
    gathering_of,
    hot_issues_of,
    json_response,
    personal_for,
    readable_account,
    readable_case,
    readable_department,
    readable_enterprise_file,
)
from suqiu.http.openapi import document
from suqiu.projections import queries, report
from suqiu.projections.account import XLSX
from suqiu.schemas.codec import to_json_value
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.store import access_log as access_log_store
from suqiu.store import events as store
from suqiu.store import gatherings as gatherings_store
from suqiu.store import reference
from suqiu.store.access_log import Access, AccessLog

log = structlog.get_logger(__name__)
@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        refused = exc.code in ("unauthorized", "forbidden")
        # Refused access is a security record: warning level, the key's prefix only, never the secret.
        level = log.error if exc.configuration else log.warning if refused else log.info
        level("access refused" if refused else "request refused", path=request.path, code=exc.code,
              reason=exc.message, key_prefix=_prefix(request))
        return error_response(exc.code, exc.message, **exc.details)
    except web.HTTPRequestEntityTooLarge:
        return error_response("too_large", f"request body over {GATHERING_BODY} bytes", limit=GATHERING_BODY)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response("not_found", f"no route {request.method} {request.path}")
        if exc.status == 405:
            allowed = sorted(getattr(exc, "allowed_methods", ()))
            return error_response("method_not_allowed", f"method {request.method} not allowed on {request.path}",
                                  allowed=allowed)
        if exc.status == 415:
            return error_response("unsupported_encoding", exc.text or "unsupported Content-Encoding",
                                  field="Content-Encoding")
        raise
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        # The database went away (a restart, a failover): the client retries, and a command
        # that did commit before the connection broke answers as a duplicate.
        log.warning("database unavailable", path=request.path, error=str(exc).strip())
        response = error_response("unavailable", "the database is unavailable: retry with the same command_id",
                                  rule="a stored command answers its first result again", retry_after_s=2)
        response.headers["Retry-After"] = "2"
        return response
    except ConnectionResetError:
        # The client left mid-request: nothing to answer and nothing wrong here.
        log.info("client went away", path=request.path)
        raise
    except Exception:
        log.exception("request failed", path=request.path)
        return error_response(INTERNAL, "internal error; nothing was stored")


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    if len(request.headers.getall("Authorization", [])) > 1:
        # Which one a proxy or a server reads differs: one request, one credential.
        raise DomainError("invalid_input", "Authorization: sent more than once", field="Authorization",
                          rule="one Authorization header")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise DomainError("unauthorized", "missing bearer key: send Authorization: Bearer <key>",
                          rule=f"every route but {', '.join(r.path for r in ROUTES if r.public)} needs an API key",
                          field="Authorization")
    key = header[7:].strip()
    if not key.isascii() or not key.isprintable():
        raise DomainError("unauthorized", "Authorization: a key is printable ASCII", field="Authorization",
                          rule="API keys are printable ASCII")
    info = await request.app[RUNTIME].keys.resolve(key)
    if info is None:
        raise DomainError("unauthorized", "unknown or revoked key", field="Authorization",
                          rule="a key issued by suqiu keys create and not revoked")
    request[PRINCIPAL] = info.principal
    request[KEY_PREFIX] = info.prefix
    return await handler(request)


# Reads that tell nothing about a case, an enterprise or a figure are not recorded.
UNAUDITED = ("/v1/health", "/v1/schemas", "/v1/openapi.json", "/metrics", "/board/assets/", "/board/login")


@web.middleware
async def audit_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """安全审计: every read, and every refused authentication or authorization, goes to the access
    log with who (key prefix, role), what, when and from where (suqiu.store.access_log)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # the board's redirects
        _audit(request, exc.status)
        raise
    _audit(request, response.status)
    return response


def _audit(request: web.Request, status: int) -> None:
    read = request.method in ("GET", "HEAD") and not request.path.startswith(UNAUDITED) and request.path != "/board"
    if not read and status not in (401, 403):
        return
    principal = request.get(PRINCIPAL)
    request.app[ACCESS_LOG].record(Access(
        at=request.app[RUNTIME].clock.now(), key_prefix=request.get(KEY_PREFIX) or _prefix(request),
        role=principal.actor.role.value if principal else None, method=request.method[:10],
        path=request.path_qs[:1000], case_id=request.match_info.get("case_id"), status=status,
        remote=request.remote))


ACCESS_LOG_QUERY = (
    Param("case", {"type": "string", "maxLength": inputs.ID_MAX}, "reads of this case"),
    Param("key", {"type": "string", "maxLength": 12}, "reads with this key (its 12-character prefix)"),
    Param("from", {"type": "string", "format": "date-time"}, "from this instant (ISO 8601 with offset)"),
    Param("to", {"type": "string", "format": "date-time"}, "before this instant"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500}, "at most this many, newest first"),
)


async def access_log(request: web.Request) -> web.Response:
    """Who read what (安全审计), newest first."""
    access.check_read_audit(request[PRINCIPAL])
    q = _query(request, ACCESS_LOG_QUERY)
    limit = _limit(q, 500, 5000)
    found = {k: inputs.identifier(q[k], k) for k in ("case", "key") if k in q}
    bounds = {k: inputs.instant(q[k], k) for k in ("from", "to") if k in q}
    async with request.app[RUNTIME].pool.connection() as conn:
        entries = await access_log_store.search(conn, case_id=found.get("case"), key_prefix=found.get("key"),
                                                start=bounds.get("from"), end=bounds.get("to"), limit=limit)
    return json_response({"entries": entries})


def _limit(q: Mapping[str, str], default: int, most: int) -> int:
    """A page size from the query: 1 to `most`, `default` when not given."""
    try:
        limit = int(q.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise DomainError("invalid_input", f"limit: must be an integer from 1 to {most}", field="limit")
    return limit


def _prefix(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    prefix = header[7:19] if header.startswith("Bearer ") and len(header) > 7 else None
    return prefix if prefix is None or (prefix.isascii() and prefix.isprintable()) else repr(prefix.encode(errors="replace"))


async def read_json(request: web.Request, limit: int = MAX_BODY) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise DomainError("too_large", f"request body over {limit} bytes", limit=limit)
    encodings = request.headers.getall("Content-Encoding", [])
    if len(encodings) > 1 or (encodings and encodings[0].strip().lower() not in ("gzip", "deflate", "identity")):
        # aiohttp passes a body in an encoding it does not know as it came: it would be read as JSON.
        raise DomainError("unsupported_encoding", f"Content-Encoding {', '.join(encodings)[:60]!r} is not accepted",
                          field="Content-Encoding", rule=ENCODINGS)
    try:
        raw = await request.read()
    except RequestPayloadError as exc:  # a body its Content-Encoding does not decode, or cut short
        raise DomainError("invalid_input", f"body: {str(exc).splitlines()[-1].strip()}", field="Content-Encoding",
                          rule=ENCODINGS) from None
    if len(raw) > limit:  # sent without a length, or inflated from gzip
        raise DomainError("too_large", f"request body over {limit} bytes", limit=limit)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainError("invalid_input", f"body: not valid UTF-8 JSON ({exc})", field="body") from None
    except RecursionError:
        raise DomainError("invalid_input", f"body: nested deeper than {inputs.MAX_DEPTH} levels", field="body",
                          rule="JSON depth") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DomainError("invalid_input", f"body: {exc}", field="body", rule="integer range") from None
    if not isinstance(body, dict):
        raise DomainError("invalid_input", "body: must be a JSON object", field="body")
    inputs.json_shape(body)
    return body


def _meta_fields(body: dict[str, Any]) -> tuple[str, int | None]:
    command_id = body.pop("command_id", None)
    if not isinstance(command_id, str) or not command_id.strip():
        raise DomainError("invalid_input", "command_id: is required (a UUID chosen by the client)", field="command_id")
    return command_id, inputs.expected_seq(body.pop("expected_seq", None))


async def submit(request: web.Request) -> web.Response:
    body = await read_json(request)
    command_id, expected = _meta_fields(body)
    if body.get("type") == "submit":
        del body["type"]
    result = await request.app[RUNTIME].service.execute(
        CommandRequest("submit", command_id, request[PRINCIPAL].actor, body, expected_seq=expected,
                       correlation_id=request.headers.get("X-Correlation-Id"), principal=request[PRINCIPAL])
    )
    return json_response(result.as_dict(), 201 if result.status == "created" else 200)


async def command(request: web.Request) -> web.Response:
    body = await read_json(request)
    command_id, expected = _meta_fields(body)
    type_name = body.pop("type", None)
    if not isinstance(type_name, str):
        raise DomainError("invalid_input", "type: is required (dispatch, accept, ...)", field="type")
    if type_name == "submit":
        raise DomainError("invalid_input", "type: submit a new appeal with POST /v1/appeals", field="type")
    result = await request.app[RUNTIME].service.execute(
        CommandRequest(type_name, command_id, request[PRINCIPAL].actor, body, case_id=request.match_info["case_id"],
                       expected_seq=expected, correlation_id=request.headers.get("X-Correlation-Id"),
                       principal=request[PRINCIPAL])
    )
    return json_response(result.as_dict())


async def get_case(request: web.Request) -> web.Response:
    case = await readable_case(request)
    rt = request.app[RUNTIME]
    personal, plain = await personal_for(request, case)
    view = case_view(case, rt.clock.now(), current(rt.context.departments, case.department), personal, plain)
    if not access.sees_routing(request[PRINCIPAL]):
        del view["routing"]
    if case.merged_into is not None:  # 并件: the main case's progress answers for this one
        async with rt.pool.connection() as conn:
            view["main_case"] = to_json_value(await queries.main_case(conn, case.merged_into))
    return json_response(view)


def case_view(case: Case, now: datetime, current_department: str | None, personal: Personal | None,
              plain: bool) -> dict[str, Any]:
    """The case now; `department` held it last, `current_department` answers for it today (合并).
    Its personal fields are plain for a reader entitled to them, else masked (personal None: erased)."""
    view = dataclasses.asdict(case)
    del view["sealed"], view["subject"]
    if case.enterprise is not None:
        view["enterprise"] = shown_enterprise(case.enterprise.uscc, case.enterprise.name, personal, plain)
        if plain:  # the subject id links a contact's cases: for those who may see the contact
            view["enterprise"]["contact_subject"] = case.subject
    view["title"] = shown_text(case.title, personal, plain)
    view["current_department"] = current_department
    view["status"] = case.status.value
    view["sla_marks"] = sorted(f"{clock}:{kind}" for clock, kind in case.sla_marks)
    view["sla_status"] = sla_status(case, now)
    # 暂定: deadlines on days no State Council notice covers yet; re-planned when it comes.
    view["provisional_deadlines"] = [d.clock for d in case.provisional]
    return view


async def history(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    case = await readable_case(request)
    case_id = case.case_id
    async with rt.pool.connection() as conn:
        rows = await store.read_history(conn, case_id)
    if not rows:
        raise DomainError("not_found", f"no case {case_id}", case_id=case_id)
    personal, plain = await personal_for(request, case)
    out = []
    for row in rows:
        name, record = rt.codec.decode_event_record(row.data)
        envelope = record.pop("envelope")
        record.pop("hash")
        if name == "AppealSubmitted":
            _show_personal(record, personal, plain)
        out.append({**envelope, "event_type": name, "data": record, "hash": row.hash.hex(), "position": row.position})
    return json_response({"case_id": case_id, "events": to_json_value(out)})


def _show_personal(record: dict[str, Any], personal: Personal | None, plain: bool) -> None:
    """An AppealSubmitted's fields as the reader may see them: the ciphertext stays in the store."""
    record.pop("sealed", None)
    if not plain:
        record.pop("subject", None)
    ent = record["enterprise"]
    record["enterprise"] = shown_enterprise(ent["uscc"], ent["name"], personal, plain)
    record["title"] = shown_text(record["title"], personal, plain)
    record["content"] = shown_text(record["content"], personal, plain)


GATHERING_BODY = 8 * 1024 * 1024  # 500 appeals of a gathering in one call; every other body: MAX_BODY


async def record_gathering(request: web.Request) -> web.Response:
    """Record a gathering (座谈会, 走访) once; the same command id and body again answers 200."""
    principal = request[PRINCIPAL]
    access.check_gathering_record(principal)
    rt = request.app[RUNTIME]
    found = parse_gathering(await read_json(request), list(rt.context.jurisdictions))
    async with rt.pool.connection() as conn:
        if await gatherings_store.record(conn, found, f"{principal.actor.role.value}:{request.get(KEY_PREFIX)}",
                                         rt.clock.now()):
            return json_response(found.as_dict(), 201)
        stored = await gatherings_store.get(conn, found.gathering_id)
    assert stored is not None
    same_record(stored, found)
    return json_response(found.as_dict())


async def get_gathering(request: web.Request) -> web.Response:
    """A gathering, and each appeal raised there as the read models hold it now."""
    access.check_gathering_read(request[PRINCIPAL])
    found = await gathering_of(request)
    async with request.app[RUNTIME].pool.connection() as conn:
        cases = await gatherings_store.cases(conn, found.gathering_id)
    return json_response({**found.as_dict(), "appeals": to_json_value(cases), "counts": {
        "appeals": len(cases), "closed": sum(c["status"] in ("closed", "withdrawn") for c in cases),
        "overdue": sum(bool(c["breached"]) for c in cases)}})


async def enterprise_file(request: web.Request) -> web.Response:
    """企业服务档案: the enterprise's appeals across channels and gatherings, its open ones, and its
    问题解决率 and 满意率."""
    return json_response(to_json_value(await readable_enterprise_file(request)))


async def gathering_account(request: web.Request) -> web.Response:
    """The account (交账单) the host sends back to the participants: each appeal with its
    department, 责任人, promised date, state, reply and marks, and the summary; JSON or xlsx."""
    found, lines, summary = await readable_account(request)
    if request.path.endswith(".xlsx"):
        return account_download(request, found, lines, summary)
    return json_response({**found.as_dict(), "summary": summary, "appeals": to_json_value(lines)})


async def submit_gathering_appeals(request: web.Request) -> web.Response:
    """Up to 500 appeals raised at one gathering, each on its own: created, a duplicate (by its
    command id or its source reference), or refused with its index and field; one bad item
    never fails the others."""
    found = await gathering_of(request)
    body = await read_json(request, GATHERING_BODY)
    unknown = sorted(set(body) - {"appeals"})
    if unknown:
        raise DomainError("invalid_input", f"{unknown[0]}: unknown field", field=unknown[0], allowed=["appeals"])
    items = body.get("appeals")
    if not isinstance(items, list) or not items:
        raise DomainError("invalid_input", "appeals: must be a non-empty list of submits", field="appeals")
    if len(items) > MAX_APPEALS:
        raise DomainError("too_large", f"appeals: more than {MAX_APPEALS} in one call", field="appeals",
                          limit=MAX_APPEALS)
    principal = request[PRINCIPAL]
    results: list[dict[str, Any] | None] = [None] * len(items)
    reqs, at = [], []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise DomainError("invalid_input", "must be an object (a submit)", field="")
            command_id, expected = _meta_fields(item)
            if item.setdefault("gathering", found.gathering_id) != found.gathering_id:
                raise DomainError("invalid_input", f"gathering: this call is for {found.gathering_id}",
                                  field="gathering")
        except DomainError as exc:
            results[i] = _item_refused(i, exc)
            continue
        reqs.append(CommandRequest("submit", command_id, principal.actor, item, expected_seq=expected,
                                   correlation_id=request.headers.get("X-Correlation-Id"), principal=principal))
        at.append(i)
    for i, answer in zip(at, await request.app[RUNTIME].service.run(reqs), strict=True):
        if isinstance(answer, DomainError):
            results[i] = _item_refused(i, answer)
        else:
            result = answer.as_dict()
            result["outcome"] = result.pop("status")  # created or duplicate; `status` is the item's HTTP status
            results[i] = {"index": i, "status": 201 if answer.status == "created" else 200, **result}
    done = [r for r in results if r is not None]
    return json_response({"gathering_id": found.gathering_id, "results": done, "counts": {
        "created": sum(r["status"] == 201 for r in done), "duplicate": sum(r["status"] == 200 for r in done),
        "refused": sum(r["status"] >= 400 for r in done)}})


def _item_refused(index: int, exc: DomainError) -> dict[str, Any]:
    details = dict(exc.details)
    field = details.get("field")
    details["field"] = f"appeals[{index}]" + (f".{field}" if field else "")
    return {"index": index, "status": STATUS.get(exc.code, 400),
            "error": {"code": exc.code, "message": f"appeals[{index}]: {exc.message}", "details": details}}


async def erase_personal_data(request: web.Request) -> web.Response:
    """个人信息删除: the subject's key deleted, and the erasure recorded on each of its cases."""
    principal = request[PRINCIPAL]
    access.check_erasure(principal)
    subject = inputs.uuid_text(request.match_info["subject"], "subject")
    body = await read_json(request)
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise DomainError("invalid_input", f"{unknown[0]}: unknown field", field=unknown[0], allowed=["reason"])
    reason = inputs.text(body.get("reason"), "reason", 200)
    erased = await request.app[RUNTIME].erasure.erase(subject, reason, f"{principal.actor.role.value}:"
                                                      f"{request.get(KEY_PREFIX) or '?'}")
    return json_response(erased.as_dict())


async def schemas(request: web.Request) -> web.Response:
    codec = request.app[RUNTIME].codec
    return json_response({"schemas": [
        {"fingerprint": s.fingerprint, "name": s.name, "kind": s.kind, "version": s.version}
        for s in codec.by_fingerprint.values()
    ]})


async def schema(request: web.Request) -> web.Response:
    fingerprint = inputs.identifier(request.match_info["fingerprint"], "fingerprint").lower()
    info = request.app[RUNTIME].codec.by_fingerprint.get(fingerprint)
    if info is None:
        raise DomainError("not_found", f"no schema with fingerprint {fingerprint}")
    return json_response({"fingerprint": info.fingerprint, "name": info.name, "kind": info.kind,
                          "version": info.version, "schema": info.schema})


async def list_appeals(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    q = _query(request, LIST_QUERY)
    state = q.get("state")
    if state is not None and state not in {s.value for s in Status if s is not Status.NEW}:
        raise DomainError("invalid_input", f"state: unknown state {state!r}", field="state")
    scope = access.list_scope(request[PRINCIPAL], q.get("department"), rt.context.departments)
    department = scope.department
    if department is not None and department not in rt.context.departments:
        raise DomainError("invalid_input", f"department: unknown department {department!r}", field="department")
    overdue = {"true": True, "false": False, None: None}.get(q.get("overdue"), "bad")
    if overdue == "bad":
        raise DomainError("invalid_input", "overdue: must be true or false", field="overdue")
    limit = _limit(q, 50, 500)
    after = q.get("after")
    if after is not None:
        after = inputs.identifier(after, "after")
    text = inputs.text(q["q"], "q", TEXT_MAX, required=False) or None if "q" in q else None
    now = rt.clock.now()
    async with rt.pool.connection() as conn:
        if after is not None and not await queries.case_known(conn, after):
            raise DomainError("invalid_input", f"after: unknown case id {after!r}", field="after")
        held = None if department is None else [m.code for m in _members(rt, [department])]
        rows = await queries.list_cases(conn, now, state=state, departments=held, usccs=scope.usccs,
                                        source_systems=scope.source_systems,
                                        overdue=overdue if isinstance(overdue, bool) else None,
                                        limit=limit, after=after, text=text)
    for row in rows:  # the department answering for it today, through any merge (合并)
        row["current_department"] = current(rt.context.departments, row["department"])
    return json_response({"appeals": rows, "next": rows[-1]["case_id"] if len(rows) == limit else None})


async def departments(request: web.Request) -> web.Response:
    """The departments now, with their load; with `as_of`, as the organisation stood then."""
    rt = request.app[RUNTIME]
    q = _query(request, AS_OF_QUERY)
    async with rt.pool.connection() as conn:
        if "as_of" in q:
            at = inputs.as_of(q["as_of"], "as_of")
            then = (await reference.as_of_async(conn, at)).departments
            visible = access.visible_departments(request[PRINCIPAL], then, rt.context.departments)
            return json_response({"as_of": at, "departments": [
                {**dataclasses.asdict(then[code]), "active": then[code].active} for code in visible]})
        counts = await queries.open_counts(conn, rt.clock.now())
    empty = queries.EMPTY_LOAD
    now = rt.context.departments
    visible = access.visible_departments(request[PRINCIPAL], now, now)
    return json_response({"departments": [
        {**dataclasses.asdict(now[code]), "active": now[code].active, "load": counts.get(code, empty)}
        for code in visible
    ]})


async def categories(request: web.Request) -> web.Response:
    """The deployment's categories (诉求类别), from its organisation; retired ones take no new appeals."""
    found = request.app[RUNTIME].context.categories
    return json_response({"categories": [dataclasses.asdict(found[c]) for c in sorted(found)]})


async def jurisdictions(request: web.Request) -> web.Response:
    """The 辖区 tree: each node with its parent and, nested, its children."""
    tree = request.app[RUNTIME].context.jurisdictions
    children: dict[str | None, list[str]] = {}
    for j in sorted(tree.values(), key=lambda j: j.code):
        children.setdefault(j.parent if j.parent in tree else None, []).append(j.code)

    def node(code: str) -> dict[str, Any]:
        return {**dataclasses.asdict(tree[code]), "children": [node(c) for c in children.get(code, [])]}

    return json_response({"jurisdictions": [node(c) for c in children.get(None, [])]})


def _query(request: web.Request, params: tuple[Param, ...]) -> dict[str, str]:
    """The query parameters, refusing one the route does not take."""
    unknown = sorted(set(request.query) - {p.name for p in params})
    if unknown:
        raise DomainError("invalid_input", f"{unknown[0]}: unknown query parameter", field=unknown[0],
                          allowed=[p.name for p in params])
    return {k: request.query[k] for k in request.query}


def _grain(text: str | None) -> Grain | None:
    if text is None:
        return None
    try:
        return Grain(text)
    except ValueError:
        raise DomainError("invalid_input", f"by: unknown grain {text[:40]!r}", field="by",
                          allowed=[g.value for g in Grain]) from None


async def _figures_answer(rt: Runtime, departments: list[Member], q: dict[str, str]) -> dict[str, Any]:
    """Load now and the period's figures; with `by`, the series of its months (quarters, years) too."""
    period, grain = Period.parse(q.get("from"), q.get("to")), _grain(q.get("by"))
    now = rt.clock.now()
    async with rt.pool.connection() as conn:
        answer = {"as_of": now, **await queries.figures(conn, departments, now, period)}
        if grain is not None:
            # An open end of the period is where the departments' activity begins or ends.
            found = ALL_TIME if period.bounded else await queries.extent(conn, departments)
            span = Period(period.start or found.start, period.end or found.end)
            span.check_series(grain)
            answer["periods"] = await queries.series(conn, departments, now, span, grain) if span.days else []
    return answer


async def department_load(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    dept = readable_department(request)
    code = dept.code
    q = _query(request, PERIOD_QUERY)
    answer = await _figures_answer(rt, _members(rt, [code]), q)
    return json_response({**dataclasses.asdict(dept), "active": dept.active, **answer})


def _members(rt: Runtime, codes: list[str]) -> list[Member]:
    """Whose facts count in the figures of `codes` (refdata.members, on this process's organisation)."""
    return members(rt.context.departments, rt.context.merged_on, codes)


def _subtree_departments(rt: Runtime, request: web.Request) -> tuple[str, set[str], list[str]]:
    """The jurisdiction asked for, its subtree, and every department it has had (active or not)."""
    ctx = rt.context
    code = inputs.identifier(request.match_info["code"], "code")
    access.check_figures(request[PRINCIPAL], None, ctx.departments)
    if code not in ctx.jurisdictions:
        raise DomainError("not_found", f"no jurisdiction {code}", jurisdiction=code)
    nodes = subtree(ctx.jurisdictions, code)
    return code, nodes, departments_in(ctx.departments, nodes)


async def jurisdiction_kpis(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    code, nodes, held = _subtree_departments(rt, request)
    q = _query(request, PERIOD_QUERY)
    answer = await _figures_answer(rt, _members(rt, held), q)
    return json_response({"jurisdiction": dataclasses.asdict(rt.context.jurisdictions[code]), "departments": held,
                          "jurisdictions": sorted(nodes), **answer})


async def hot_issues(request: web.Request) -> web.Response:
    _query(request, HOTSPOT_QUERY)
    return json_response(to_json_value(await hot_issues_of(request)))


async def routing_quality(request: web.Request) -> web.Response:
    """智能分拨的效果: top-1 and top-3 against the department that finally replied, and how often
    the first dispatch followed the suggestion, per month of the suggestion."""
    rt = request.app[RUNTIME]
    access.check_figures(request[PRINCIPAL], None, rt.context.departments)
    q = _query(request, PERIOD_QUERY[:2])
    period = Period.parse(q.get("from"), q.get("to"))
    async with rt.pool.connection() as conn:
        outcomes = await queries.routing_outcomes(conn, *period.instants())
    return json_response(routing.quality(outcomes, rt.context.departments))


async def jurisdiction_report(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    code, _, _ = _subtree_departments(rt, request)
    q = _query(request, REPORT_QUERY)
    if "month" not in q:
        raise DomainError("invalid_input", "month: required, as YYYY-MM", field="month", rule="required")
    month = Period.month(q["month"])
    ctx = rt.context
    async with rt.pool.connection() as conn:
        body = await report.monthly(conn, Organisation(ctx.jurisdictions, ctx.departments, ctx.categories),
                                    ctx.merged_on, code, month, rt.clock.now())
    assert month.start is not None
    return web.Response(body=body, content_type=XLSX, headers={
        "Content-Disposition": f'attachment; filename="{report.filename(code, month.start)}"'})


async def jurisdiction_ranking(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    code, _, held = _subtree_departments(rt, request)
    q = _query(request, RANKING_QUERY)
    period = Period.parse(q.get("from"), q.get("to"))
    by = q.get("by", "on_time_rate")
    if by not in queries.RANKED:
        raise DomainError("invalid_input", f"by: cannot rank on {by[:40]!r}", field="by", allowed=list(queries.RANKED))
    now = rt.clock.now()
    names = rt.context.departments
    async with rt.pool.connection() as conn:
        entries = await queries.ranking(conn, ranked_members(names, rt.context.merged_on, held), now, period, by,
                                        [d for d in held if not names[d].active])
    return json_response({"jurisdiction": code, "as_of": now, "period": period.as_dict(), "by": by, "ranking": [
        {**e, "name": names[e["department"]].name, "active": names[e["department"]].active,
         "merged_into": names[e["department"]].merged_into} for e in entries]})


async def health(request: web.Request) -> web.Response:
    """Each check bounded on its own (CHECK_SECONDS), all at once: health answers fast whatever is down."""
    rt = request.app[RUNTIME]
    checks: dict[str, Any] = {}

    async def database() -> str:
        async with rt.pool.connection() as conn:
            checks["lag"] = await queries.lag(conn, rt.settings.events_topic)
            checks["quarantine"] = await queries.quarantined(conn)
        return "ok"

    probe = request.app.get(BROKER_PROBE)
    checks["database"], checks["broker"] = await asyncio.gather(
        _bounded(database(), "database"), _bounded(probe(), "broker") if probe else _constant("not configured"))
    checks["calendar"] = rt.calendar_coverage()  # reported, not a failure: the API still answers
    # Quarantined cases and a lag past the bound are read models falling short: degraded, by name.
    lagging = checks.get("lag", {}).get("events", 0) > rt.settings.health_lag_bound
    held_back = checks.get("quarantine", {}).get("cases", 0) > 0
    healthy = checks["database"] == "ok" and checks["broker"] == "ok" and not lagging and not held_back
    if lagging:
        checks["lag"]["status"] = f"over the bound of {rt.settings.health_lag_bound} events (SUQIU_HEALTH_LAG_BOUND)"
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: this process's counters and the store-wide gauges as of now."""
    rt = request.app[RUNTIME]
    try:
        await asyncio.wait_for(_read_store_metrics(rt), CHECK_SECONDS)
    except Exception as exc:  # the counters still answer; the gauges keep their last values
        log.warning("store metrics not read", error=str(exc) or type(exc).__name__)
    return web.Response(body=rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def _read_store_metrics(rt: Runtime) -> None:
    """Set the store-wide gauges (suqiu.base.metrics) from PostgreSQL, as of now."""
    now = rt.clock.now()
    async with rt.pool.connection() as conn:
        gauges, lags = await queries.operations(conn, rt.settings.events_topic, rt.settings.partitions, now)
    through = rt.policy.calendar.is_workday.official_through
    rt.metrics.store(gauges, lags, (through - now.astimezone(CHINA).date()).days)


BROKER_PROBE: web.AppKey[Callable[[], Awaitable[str]]] = web.AppKey("broker_probe")
CHECK_SECONDS = 1.5


async def _bounded(check: Awaitable[str], name: str) -> str:
    try:
        return await asyncio.wait_for(check, CHECK_SECONDS)
    except TimeoutError:
        return f"unreachable: no answer within {CHECK_SECONDS} s"
    except Exception as exc:
        log.warning("health check failed", check=name, error=str(exc))
        return f"unreachable: {exc}"


async def _constant(value: str) -> str:
    return value


LIST_QUERY = (
    Param("state", {"type": "string", "enum": sorted(s.value for s in Status if s is not Status.NEW)}, "case state"),
    Param("department", {"type": "string", "maxLength": inputs.ID_MAX}, "assigned department code"),
    Param("overdue", {"type": "string", "enum": ["true", "false"]}, "only (or no) cases past a running deadline"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
    Param("after", {"type": "string", "maxLength": inputs.ID_MAX}, "the last case id of the previous page"),
    Param("q", {"type": "string", "maxLength": TEXT_MAX},
          "a case id, source reference (工单编号) or USCC exactly, or part of the enterprise name or title"),
)


PERIOD_QUERY = (
    Param("from", {"type": "string", "format": "date"},
          f"first day of the period (Asia/Shanghai), in the years {FIRST_YEAR} to {LAST_YEAR}; all time if absent"),
    Param("to", {"type": "string", "format": "date"}, "day after the period (exclusive)"),
    Param("by", {"type": "string", "enum": [g.value for g in Grain]},
          "one entry per month, quarter or year of the period, in `periods`"),
)
HOTSPOT_QUERY = (Param("jurisdiction", {"type": "string", "maxLength": inputs.ID_MAX},
                       "the jurisdiction and everything under it; this system's own if absent"), *PERIOD_QUERY[:2])
RANKING_QUERY = (*PERIOD_QUERY[:2], Param("by", {"type": "string", "enum": list(queries.RANKED),
                                                "default": "on_time_rate"}, "the rate to rank on"))

AS_OF_QUERY = (Param("as_of", {"type": "string", "maxLength": 40},
                     "an ISO date (end of that day, Beijing time) or instant: the organisation then"),)
REPORT_QUERY = (Param("month", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                      f"the month, YYYY-MM, in the years {FIRST_YEAR} to {LAST_YEAR}", required=True),)


async def openapi(request: web.Request) -> web.Response:
    return json_response(document(ROUTES, [*STATUS, INTERNAL]))


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/appeals", submit, "Submit an appeal (受理)", "intake, system, admin", body="Submit",
          success=201),
    Route("POST", "/v1/appeals/{case_id}/commands", command, "Act on a case (派单, 签收, 转办, 答复, 办结, ...)",
          "by command: see the type's rule", body="command"),
    Route("GET", "/v1/appeals", list_appeals, "List cases, in submission order", "any key; a department its own, "
          "an enterprise its enterprises'", query=LIST_QUERY),
    Route("GET", "/v1/appeals/{case_id}", get_case, "The case now: deadlines, SLA status, provisional deadlines",
          "readers of the case"),
    Route("GET", "/v1/appeals/{case_id}/history", history, "Every event of the case, with its hash (全过程可追溯)",
          "readers of the case"),
    Route("GET", "/v1/schemas", schemas, "The Avro schemas by fingerprint", "anyone", public=True),
    Route("GET", "/v1/schemas/{fingerprint}", schema, "One Avro schema", "anyone", public=True),
    Route("GET", "/v1/departments", departments, "Departments and their open load, or as they stood on a date",
          "staff; a department itself", query=AS_OF_QUERY),
    Route("GET", "/v1/categories", categories, "The deployment's appeal categories (诉求类别)", "any key"),
    Route("GET", "/v1/departments/{code}/load", department_load,
          "A department's load now and its figures for a period (三率, handling time)", "staff; a department itself",
          query=PERIOD_QUERY),
    Route("GET", "/v1/jurisdictions", jurisdictions, "The jurisdiction tree (辖区), nested", "any key"),
    Route("GET", "/v1/hotspots", hot_issues,
          "热点: a jurisdiction's appeals of a window grouped by what they are about, hottest first (most "
          "enterprises, most appeals, most recent), each with a label from its own words, its cases and departments",
          "staff", query=HOTSPOT_QUERY),
    Route("GET", "/v1/routing/quality", routing_quality,
          "智能分拨: top-1 and top-3 accuracy of the suggestions against the department that finally replied, "
          "and how often dispatchers followed them, per month", "staff", query=PERIOD_QUERY[:2]),
    Route("GET", "/v1/jurisdictions/{code}/kpis", jurisdiction_kpis,
          "A jurisdiction's figures over its subtree, for a period", "staff", query=PERIOD_QUERY),
    Route("GET", "/v1/jurisdictions/{code}/ranking", jurisdiction_ranking,
          "The subtree's departments ranked on one rate over a period (排名)", "staff", query=RANKING_QUERY),
    Route("GET", "/v1/jurisdictions/{code}/report.xlsx", jurisdiction_report,
          "The monthly report (月度通报): figures beside last month's, ranking, overdue and supervised cases",
          "staff", query=REPORT_QUERY, media=XLSX),
    Route("GET", "/v1/health", health, "Database, broker, read-model lag and calendar", "anyone", public=True),
    Route("GET", "/v1/enterprises/{uscc}", enterprise_file,
          "The enterprise's file (企业服务档案): its appeals, open ones, 问题解决率 and 满意率",
          "the enterprise itself, dispatcher, admin, auditor"),
    Route("POST", "/v1/gatherings", record_gathering,
          "Record a gathering (座谈会, 上门问需, 领导走访, 双万双服) once", "dispatcher, admin", body="Gathering",
          success=201),
    Route("GET", "/v1/gatherings/{gathering_id}", get_gathering,
          "A gathering and each appeal raised there: department, deadline, state, overdue", "staff, intake"),
    Route("GET", "/v1/gatherings/{gathering_id}/account", gathering_account,
          "The gathering's account (交账单): each appeal's department, 责任人, promised date, state, reply, marks",
          "staff, intake"),
    Route("GET", "/v1/gatherings/{gathering_id}/account.xlsx", gathering_account, "The account as an xlsx workbook",
          "staff, intake", media=XLSX),
    Route("POST", "/v1/gatherings/{gathering_id}/appeals", submit_gathering_appeals,
          "Submit up to 500 appeals of a gathering; each answered on its own", "intake, system, admin",
          body="GatheringAppeals"),
    Route("POST", "/v1/personal-data/{subject}/erase", erase_personal_data,
          "Erase a data subject's personal data (个人信息删除): its key, on every case", "admin", body="Erasure"),
    Route("GET", "/v1/access-log", access_log, "Who read what, when, from where (安全审计)", "auditor, admin",
          query=ACCESS_LOG_QUERY),
    Route("GET", "/v1/openapi.json", openapi, "This document", "anyone", public=True),
    Route("GET", "/metrics", metrics, "Prometheus metrics (docs/operations.md)", "anyone", public=True,
          media="text/plain"),
)
PUBLIC_PATHS = frozenset(r.path for r in ROUTES if r.public and "{" not in r.path)
# The board signs in by session cookie (suqiu.board.views.page), not by bearer key.
PUBLIC_PREFIXES = (*(r.path.split("{", 1)[0] for r in ROUTES if r.public and "{" in r.path), "/board")


# Every answer: no sniffing a JSON body as a page, no framing (clickjacking), no referrer leaving,
# and for the board's pages scripts and styles from this server only (plotly.js sets inline styles).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


async def _access_log(app: web.Application) -> AsyncIterator[None]:
    """The process's access-log writer, and the retention pruned every hour."""
    rt = app[RUNTIME]
    app[ACCESS_LOG] = AccessLog(rt.pool)

    async def prune_forever() -> None:
        while True:
            try:
                gone = await access_log_store.prune(rt.pool, rt.clock.now(), rt.settings.access_log_days)
                if gone:
                    log.info("access log pruned", rows=gone, days=rt.settings.access_log_days)
            except Exception:
                log.warning("access log not pruned; next hour again", exc_info=True)
            await asyncio.sleep(3600)

    pruner = asyncio.create_task(prune_forever())
    yield
    pruner.cancel()
    await app[ACCESS_LOG].close()


def create_app(runtime: Runtime, broker_probe: Callable[[], Awaitable[str]] | None = None) -> web.Application:
    app = web.Application(middlewares=[audit_reads, errors, authenticate], client_max_size=GATHERING_BODY)
    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(_access_log)
    app[RUNTIME] = runtime
    if broker_probe is not None:
        app[BROKER_PROBE] = broker_probe
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    add_routes(app)
    return app
