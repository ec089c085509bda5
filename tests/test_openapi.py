"""The served OpenAPI document is the contract: generated from the routes and command classes,
and schemathesis finds no 5xx or undocumented answer when it generates requests from it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from suqiu.domain.commands import COMMAND_TYPES
from suqiu.http.api import ROUTES
from tests.conftest import Api

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 100  # per operation; small operations (health) run out sooner: over 1,000 requests a run


async def test_the_document_covers_every_route_and_command(api: Api) -> None:
    status, doc = await api.call(None, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops} == {(r.path, r.method) for r in ROUTES}
    schemas = doc["components"]["schemas"]
    for name, cls in COMMAND_TYPES.items():
        schema = schemas["".join(part.title() for part in name.split("_"))]
        assert set(schema["properties"]) >= {f.name for f in cls.__dataclass_fields__.values()}, name
    assert "enum" not in schemas["Submit"]["properties"]["category"]  # the deployment's own: GET /v1/categories
    assert schemas["Submit"]["properties"]["channel"]["enum"][0] == "app"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def _fuzz(base: str, key: str, doc: dict[str, Any]) -> tuple[int, list[str]]:
    """Every operation, EXAMPLES generated requests each; returns (requests sent, failures)."""
    schema = schemathesis.openapi.from_dict(doc)
    sent, failures = 0, []
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal sent
            response = case.call(base_url=base, session=session, headers={"Authorization": f"Bearer {key}"},
                                 timeout=10)
            sent += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:
                failures.append(f"{case.operation.label}: {str(exc)[:600]}")
                raise

        with contextlib.suppress(Exception):  # the failure is recorded; go on with the other operations
            check()
    return sent, failures


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
        api: Api, keys: dict[str, str]) -> None:
    _, doc = await api.call(None, "GET", "/openapi.json")
    sent, failures = await asyncio.to_thread(_fuzz, api.base, keys["admin"], json.loads(json.dumps(doc)))
    assert sent >= 1000, sent
    assert not failures, "\n".join(failures)
