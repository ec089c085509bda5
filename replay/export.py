"""Audit packages: events (JSON Lines with the exact Avro bytes), a CSV timeline and a manifest.

Each case's events in the window are anchored to the hash before the first of them, so
`verify_package` rechecks every chain offline, without a database.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from suqiu.domain import events as e
from suqiu.replay.history import Stored, entry, to_csv
from suqiu.replay.verify import Problem
from suqiu.schemas.codec import GENESIS, HASH_SIZE, HEADER, Codec, chain_hash, to_json_value

FILES = ("events.jsonl", "timeline.csv")
FORMAT = "suqiu-audit-package/1"
_HASH_HEX = 2 * HASH_SIZE
_CASE_NUMBERS = ("first_seq", "last_seq", "events")


class PackageError(ValueError):
    """A package's manifest is not the one `export` writes (truncated, edited, or not a package)."""


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    department: str | None = None
    jurisdictions: frozenset[str] | None = None


def _touches(events: list[e.Event], w: Window) -> bool:
    if w.jurisdictions is not None:
        first = events[0].payload
        if not isinstance(first, e.AppealSubmitted) or first.jurisdiction not in w.jurisdictions:
            return False
    if w.department is not None:
        return any(w.department in (getattr(ev.payload, "department", None), getattr(ev.payload, "to_department", None),
                                    ev.actor.department) for ev in events)
    return True


def export(conn: psycopg.Connection[Any], codec: Codec, w: Window, out: Path,
           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write the package for cases with events recorded in [start, end) matching the filters."""
    out.mkdir(parents=True, exist_ok=True)
    case_ids = [r[0] for r in conn.execute(
        "SELECT DISTINCT case_id FROM events WHERE recorded_at >= %s AND recorded_at < %s ORDER BY case_id",
        (w.start, w.end)).fetchall()]
    manifest_cases: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    with open(out / "events.jsonl", "w", encoding="utf-8") as jf:
        for case_id in case_ids:
            rows = conn.execute("SELECT data FROM events WHERE case_id = %s AND recorded_at < %s ORDER BY seq",
                                (case_id, w.end)).fetchall()
            datas = [bytes(r[0]) for r in rows]
            decoded = [codec.decode_event(d) for d in datas]
            if progress is not None:
                progress(len(datas))
            if not _touches(decoded, w):
                continue
            prev, first = GENESIS, None
            for data, ev in zip(datas, decoded, strict=True):
                if ev.recorded_at < w.start:
                    prev = data[-HASH_SIZE:]
                    continue
                first = first or ev.seq
                _, record = codec.decode_event_record(data)
                line = {"case_id": ev.case_id, "seq": ev.seq, "event_id": ev.event_id, "event_type": ev.event_type,
                        "record": to_json_value(record), "avro": base64.b64encode(data).decode()}
                jf.write(json.dumps(line, ensure_ascii=False) + "\n")
                entries.append(entry(Stored(ev, data[-HASH_SIZE:])))
                manifest_cases[case_id] = {"first_seq": first, "last_seq": ev.seq, "anchor_hash": prev.hex(),
                                           "head_hash": data[-HASH_SIZE:].hex(),
                                           "events": ev.seq - first + 1}
    (out / "timeline.csv").write_text(to_csv(entries), "utf-8")
    manifest = {
        "format": FORMAT,
        "window": {"from": to_json_value(w.start), "to": to_json_value(w.end), "department": w.department,
                   "jurisdictions": sorted(w.jurisdictions) if w.jurisdictions else None},
        "counts": {"cases": len(manifest_cases), "events": len(entries)},
        "files": {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in FILES},
        "cases": manifest_cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), "utf-8")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """A package's manifest.json, checked to have the shape `export` writes: PackageError says
    what is wrong. Only the package's own files may be named, so a manifest cannot point elsewhere."""
    try:
        manifest = json.loads((path / "manifest.json").read_text("utf-8"))
    except OSError as exc:
        raise PackageError(f"manifest.json: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PackageError(f"manifest.json: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackageError(f"manifest.json: not a {FORMAT} manifest")
    counts, files, cases = manifest.get("counts"), manifest.get("files"), manifest.get("cases")
    if not isinstance(counts, dict) or not all(type(counts.get(k)) is int for k in ("cases", "events")):
        raise PackageError("manifest.json: counts: needs whole numbers cases and events")
    if not isinstance(files, dict) or set(files) != set(FILES) or not all(_is_hex(v, 64) for v in files.values()):
        raise PackageError(f"manifest.json: files: names exactly {', '.join(FILES)}, each with its SHA-256")
    if not isinstance(cases, dict):
        raise PackageError("manifest.json: cases: needs an object of case ids")
    for case_id, info in cases.items():
        if not (isinstance(info, dict) and all(type(info.get(k)) is int for k in _CASE_NUMBERS)
                and _is_hex(info.get("anchor_hash"), _HASH_HEX) and _is_hex(info.get("head_hash"), _HASH_HEX)):
            raise PackageError(f"manifest.json: cases: {case_id[:80]!r} needs whole numbers "
                               f"{', '.join(_CASE_NUMBERS)} and hex anchor_hash and head_hash")
    return manifest


def _is_hex(value: object, length: int) -> bool:
    if not isinstance(value, str) or len(value) != length:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def verify_package(path: Path) -> tuple[dict[str, Any], list[Problem]]:
    """Offline: file digests, every chain from its anchor to its head, and the counts.
    PackageError when the manifest itself is not to be trusted."""
    manifest = read_manifest(path)
    problems: list[Problem] = []
    for f, digest in manifest["files"].items():
        try:
            actual = hashlib.sha256((path / f).read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(Problem("-", 0, "file missing", f"{f}: {exc.strerror or exc}"))
            continue
        if actual != digest:
            problems.append(Problem("-", 0, "file changed", f"{f}: SHA-256 {actual} is not the manifest's {digest}"))
    cases: dict[str, Any] = manifest["cases"]
    state: dict[str, tuple[int, bytes]] = {}
    counted: dict[str, int] = {}
    try:
        lines = (path / "events.jsonl").read_text("utf-8").splitlines()
    except (OSError, ValueError):
        lines = []  # already a problem above: missing, or changed since its digest was taken
    for n, raw in enumerate(lines, 1):
        try:
            line = json.loads(raw)
            data = base64.b64decode(line["avro"], validate=True)
            case_id, seq = str(line["case_id"]), int(line["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(Problem("-", n, "unreadable line", f"events.jsonl line {n}: {exc!r}"))
            continue
        info = cases.get(case_id)
        if info is None:
            problems.append(Problem(case_id, seq, "not in manifest", f"events.jsonl line {n}"))
            continue
        last_seq, prev = state.get(case_id, (info["first_seq"] - 1, bytes.fromhex(info["anchor_hash"])))
        if seq != last_seq + 1:
            problems.append(Problem(case_id, last_seq + 1, "missing", f"next line has seq {seq}"))
        carried = data[-HASH_SIZE:]
        if chain_hash(prev, data[HEADER:-HASH_SIZE]) != carried:
            problems.append(Problem(case_id, seq, "chain broken", f"events.jsonl line {n}"))
        state[case_id] = (seq, carried)
        counted[case_id] = counted.get(case_id, 0) + 1
    for case_id, info in cases.items():
        seq, head = state.get(case_id, (0, b""))
        if seq != info["last_seq"] or head.hex() != info["head_hash"]:
            problems.append(Problem(case_id, info["last_seq"], "head", "the chain does not end at the manifest's head"))
        if counted.get(case_id, 0) != info["events"]:
            problems.append(Problem(case_id, 0, "count", f"{counted.get(case_id, 0)} events, manifest says {info['events']}"))
    if sum(counted.values()) != manifest["counts"]["events"]:
        problems.append(Problem("-", 0, "count", "the event count differs from the manifest"))
    return manifest, problems
