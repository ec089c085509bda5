"""The HTTP contract as an OpenAPI 3.1 document, built from the API's route table and the command
classes the validator parses, so the two cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, get_origin

from suqiu.domain import inputs
from suqiu.domain.commands import COMMAND_TYPES, LIFECYCLE_TYPES, TEXT, FieldSpec, field_specs
from suqiu.domain.gatherings import KINDS, MAX_APPEALS, MAX_PARTICIPANTS
from suqiu.domain.model import VOCABULARIES, Enterprise
from suqiu.http.common import Route

VERSION = "1"
# The characters the validator refuses (suqiu.domain.inputs), as JSON Schema patterns.
_ID_PATTERN = f"^[^{inputs.CONTROL_IN_ID}]*$"
_TEXT_PATTERN = f"^[^{inputs.CONTROL_IN_TEXT}]*$"


def _error(codes: Iterable[str]) -> dict[str, Any]:
    return {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "enum": list(codes)},
                "message": {"type": "string"},
                "details": {"type": "object",
                            "description": "`field` and `rule` name what was refused, where it applies"},
            },
        }},
    }


RESULT = {
    "type": "object", "required": ["status", "command_id", "case_id", "seq", "event_ids"],
    "properties": {
        "status": {"type": "string", "enum": ["created", "accepted", "duplicate", "unchanged"]},
        "command_id": {"type": "string"}, "case_id": {"type": "string"}, "seq": {"type": "integer"},
        "event_ids": {"type": "array", "items": {"type": "string"}},
        "event_id": {"type": ["string", "null"]},
    },
}
ENVELOPE = {
    "command_id": {"type": "string", "minLength": 1, "maxLength": inputs.ID_MAX, "pattern": _ID_PATTERN,
                   "description": "chosen by the client (a UUID); a repeat answers the original result"},
    "expected_seq": {"type": "integer", "minimum": 1, "maximum": inputs.EXPECTED_SEQ_MAX,
                     "description": "the case's seq the client saw: refused with 409 conflict if it moved on"},
}


def _field(spec: FieldSpec) -> dict[str, Any]:
    hint = spec.hint
    if hint is str:
        limit = spec.meta.get("max", TEXT)
        out: dict[str, Any] = {"type": "string", "maxLength": limit,
                               "pattern": _ID_PATTERN if limit <= inputs.ID_MAX else _TEXT_PATTERN}
        if spec.required:
            out["minLength"] = 1
        if spec.name in VOCABULARIES:
            out["enum"] = sorted(VOCABULARIES[spec.name])
        return out
    if hint is int:
        return {"type": "integer", "minimum": -inputs.INT64, "maximum": inputs.INT64 - 1}
    if hint is datetime:
        return {"type": "string", "format": "date-time",
                "description": f"ISO 8601 with an offset, years {inputs.FIRST_YEAR}-{inputs.LAST_YEAR}"}
    if get_origin(hint) is tuple:
        return {"type": "array", "maxItems": 100, "items": {"type": "string", "minLength": 1, "maxLength": TEXT,
                                                            "pattern": _TEXT_PATTERN}}
    if hint is Enterprise:
        return _object(field_specs(Enterprise))
    raise TypeError(f"no schema for {hint!r}")


def _object(specs: Iterable[FieldSpec], extra: dict[str, Any] | None = None,
            required: Iterable[str] = ()) -> dict[str, Any]:
    specs = list(specs)
    properties = {**(extra or {}), **{s.name: _field(s) for s in specs}}
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": sorted({*required, *(s.name for s in specs if s.required)})}


def command_schemas() -> dict[str, dict[str, Any]]:
    """One schema per command type, as the HTTP body carries it."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in sorted(COMMAND_TYPES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        body = _object(field_specs(cls), {"type": {"const": name}, **ENVELOPE},
                       ["command_id"] if name == "submit" else ["type", "command_id"])
        body["description"] = doc
        out[_schema_name(name)] = body
    return out


def _schema_name(command: str) -> str:
    return "".join(part.title() for part in command.split("_"))


# POST /v1/personal-data/{subject}/erase
ERASURE = {"type": "object", "required": ["reason"], "additionalProperties": False,
           "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 200,
                                     "description": "why, e.g. the request's reference (PIPL art. 47)"}}}


# POST /v1/gatherings and its appeals (suqiu.domain.gatherings)
GATHERING = {
    "type": "object", "required": ["command_id", "kind", "date", "jurisdiction", "title", "host"], "additionalProperties": False,
    "properties": {
        "command_id": {"type": "string", "minLength": 1, "maxLength": inputs.ID_MAX,
                       "description": "names the gathering: the same command id again answers 200 with it"},
        "kind": {"type": "string", "enum": sorted(KINDS)},
        "date": {"type": "string", "format": "date"},
        "jurisdiction": {"type": "string", "minLength": 1, "maxLength": inputs.ID_MAX},
        "title": {"type": "string", "minLength": 1, "maxLength": 200, "description": "the theme, e.g. 营商环境面对面"},
        "host": {"type": "string", "minLength": 1, "maxLength": 200, "description": "the host, e.g. 区营商办"},
        "participants": {"type": "array", "maxItems": MAX_PARTICIPANTS, "items": {
            "type": "object", "required": ["uscc", "name"], "additionalProperties": False,
            "properties": {"uscc": {"type": "string"}, "name": {"type": "string", "minLength": 1, "maxLength": 200}}}},
    },
}
GATHERING_APPEALS = {
    "type": "object", "required": ["appeals"], "additionalProperties": False,
    "properties": {"appeals": {"type": "array", "minItems": 1, "maxItems": MAX_APPEALS,
                               "items": {"$ref": "#/components/schemas/Submit"}}},
}


def document(routes: Iterable[Route], error_codes: Iterable[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (suqiu.http.api.ROUTES), refusing with `error_codes`."""
    schemas: dict[str, Any] = {"Error": _error(error_codes), "Result": RESULT, "Erasure": ERASURE,
                               "Gathering": GATHERING, "GatheringAppeals": GATHERING_APPEALS, **command_schemas()}
    lifecycle = {"oneOf": [{"$ref": f"#/components/schemas/{_schema_name(t)}"} for t in sorted(LIFECYCLE_TYPES)],
                 "discriminator": {"propertyName": "type"}}
    paths: dict[str, Any] = {}
    for route in routes:
        op: dict[str, Any] = {"summary": route.summary, "description": f"Who: {route.who}.",
                              "operationId": route.handler.__name__,
                              "responses": _responses(route)}
        params = [{"name": n, "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "maxLength": inputs.ID_MAX, "pattern": _ID_PATTERN}}
                  for n in re.findall(r"{(\w+)}", route.path)]
        params += [{"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
                    "description": p.description} for p in route.query]
        if params:
            op["parameters"] = params
        if route.body is not None:
            schema = lifecycle if route.body == "command" else {"$ref": f"#/components/schemas/{route.body}"}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        if route.public:
            op["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Suqiu (诉求) HTTP API", "version": VERSION,
                 "description": "Enterprise appeals: submit, dispatch, handle, close, supervise. Every error "
                                "answers in the Error shape and stores nothing. See docs/http.md."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "an API key from `suqiu keys create`"}}},
        "security": [{"bearer": []}],
    }


def _responses(route: Route) -> dict[str, Any]:
    error = {"description": "refused: nothing stored",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    body: dict[str, Any] = {"$ref": "#/components/schemas/Result"} if route.body in ("Submit", "command") \
        else {"type": "object"}
    if route.media.startswith("text/"):
        body = {"type": "string"}
    elif route.media != "application/json":
        body = {"type": "string", "format": "binary"}
    out: dict[str, Any] = {str(route.success): {"description": "done", "content": {route.media: {"schema": body}}}}
    if route.body in ("Submit", "Gathering"):
        out["200"] = {"description": "a repeat: the original result",
                      "content": {"application/json": {"schema": body}}}
    out["4XX"] = error
    out["503"] = {"description": "unavailable (health: degraded; commands: calendar_unknown)",
                  "content": {"application/json": {"schema": {"type": "object"}}}}
    return out

