"""The read audit trail (安全审计): every read and every refused key is recorded, queryable by
auditors, hash-chained so a forged or deleted row is found, and pruned by its retention."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from suqiu.base.config import Settings
from suqiu.service.runtime import Runtime
from suqiu.store import access_log
from tests.conftest import Api, run_cli
from tests.support.sla import query, replay


async def entries(api: Api, query_: str, wanted: int) -> list[dict[str, Any]]:
    """The access log as an auditor reads it, once `wanted` entries are there (batches land in ms)."""
    for _ in range(100):
        status, body = await api.call("auditor", "GET", f"/access-log?{query_}")
        assert status == 200, body
        if len(body["entries"]) >= wanted:
            return list(body["entries"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {wanted} entries for {query_}: {body}")


async def test_reads_and_refused_keys_are_recorded_and_a_forged_row_breaks_the_chain(
        settings: Settings, runtime: Runtime, api: Api, keys: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    case = (await api.submit())["case_id"]
    for path in (f"/appeals/{case}", f"/appeals/{case}/history"):
        assert (await api.call("dispatcher", "GET", path))[0] == 200
    assert (await api.call("sk_not_a_key_at_all", "GET", f"/appeals/{case}"))[0] == 401
    assert (await api.call(None, "GET", "/health"))[0] in (200, 503)  # tells nothing of a case: not recorded
    found = await entries(api, f"case={case}", 3)
    mine = [e for e in found if e["role"] == "dispatcher"]
    assert {e["path"] for e in mine} == {f"/v1/appeals/{case}", f"/v1/appeals/{case}/history"}
    assert all(e["key_prefix"] == keys["dispatcher"][:12] and e["status"] == 200 and e["remote"] for e in mine)
    refused = [e for e in found if e["status"] == 401]
    assert refused and refused[0]["role"] is None and refused[0]["key_prefix"] == "sk_not_a_key"
    assert not any(e["path"].startswith("/v1/health") for e in await entries(api, "limit=5000", 1))
    # Who read is for auditors and admins alone; a department's key is refused (and recorded).
    status, body = await api.call("dispatcher", "GET", "/access-log")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.call("auditor", "GET", "/access-log?from=yesterday")
    assert status == 400 and body["error"]["details"]["field"] == "from"

    # The command line reads the same trail.
    monkeypatch.setenv("SUQIU_DATABASE_URL", settings.database_url or "")
    assert await asyncio.to_thread(run_cli, ["--log-level", "WARNING", "audit", "reads", "--case", case]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["time", "(Asia/Shanghai)", "key"]
    assert f"/v1/appeals/{case}/history" in out and keys["dispatcher"][:12] in out

    code, out = await replay(settings, "verify", "--access-log")
    assert code == 0 and "access log:" in out and "OK" in out, out
    # An edited row, then a deleted one: each is found and named.
    first = query(settings, "SELECT writer, seq FROM access_log WHERE case_id = %s ORDER BY seq LIMIT 1", case)[0]
    query(settings, "UPDATE access_log SET key_prefix = 'sk_someone_e' WHERE writer = %s AND seq = %s", *first)
    code, out = await replay(settings, "verify", "--access-log")
    assert code == 1 and f"access-log {first[0]} seq {first[1]}: access log: was edited" in out, out
    query(settings, "DELETE FROM access_log WHERE writer = %s AND seq = %s", first[0], first[1] + 1)
    code, out = await replay(settings, "verify", "--access-log")
    assert code == 1 and f"seq {first[1] + 2}: access log: rows {first[1] + 1} to {first[1] + 1} are missing" in out, \
        out


async def test_retention_deletes_old_reads_and_what_is_left_still_verifies(
        settings: Settings, runtime: Runtime, api: Api) -> None:
    case = (await api.submit())["case_id"]
    for _ in range(3):
        assert (await api.call("auditor", "GET", f"/appeals/{case}"))[0] == 200
    await entries(api, f"case={case}", 3)
    oldest = query(settings, "SELECT min(at) FROM access_log")[0][0]
    # A year on, with 180 days kept: the rows of today go; a later read starts where they ended.
    gone = await access_log.prune(runtime.pool, oldest + timedelta(days=365), 180)
    assert gone >= 3 and query(settings, "SELECT count(*) FROM access_log")[0][0] == 0
    assert (await api.call("auditor", "GET", f"/appeals/{case}/history"))[0] == 200
    await entries(api, f"case={case}", 1)
    code, out = await replay(settings, "verify", "--access-log")
    assert code == 0, out
