"""`suqiu import`: historical appeals from CSV, mapped by a TOML file, as import_case commands.

Each good row becomes one whole case, committed together with the rest of its chunk (so no
live SLA timer ever sees a closed historical case half-built); each bad row goes to the rejects file with its row number and
the reason, and the good rows still import. Command ids derive from (source system, source
reference), so running the same import twice adds nothing.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import multiprocessing.util
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from suqiu.base import tomlfile
from suqiu.base.config import Settings
from suqiu.base.processes import settle_gc, worker_pool
from suqiu.domain import DomainError
from suqiu.domain.model import OUTCOMES, Actor, Role
from suqiu.service.commands import CommandRequest, CommandResult
from suqiu.service.runtime import Runtime

NAMESPACE = uuid.UUID("9a1f3c1e-3b55-4c5e-8a57-0d8f7c0b2e11")
REQUIRED = ("source_ref", "submitted_at", "uscc", "enterprise_name", "channel", "category", "jurisdiction",
            "title", "content")
OPTIONAL = ("contact_name", "contact_phone", "priority", "department", "replied_at", "reply", "closed_at", "outcome")
FIELDS = REQUIRED + OPTIONAL
TIMES = ("submitted_at", "replied_at", "closed_at")
BODY_TO_COLUMN = {"enterprise.uscc": "uscc", "enterprise.name": "enterprise_name",
                  "enterprise.contact_name": "contact_name", "enterprise.contact_phone": "contact_phone"}
_EXCEL_SERIAL = re.compile(r"^\d{4,6}(\.\d+)?$")
OPEN_CASES = ("live", "close_as")
_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d",
            "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%Y%m%d%H%M%S")


class MappingError(Exception):
    """The mapping file is wrong; the message names the key."""


@dataclass(frozen=True, slots=True)
class ImportMapping:
    source_system: str
    encoding: str
    delimiter: str
    offset: timezone
    columns: Mapping[str, str]
    values: Mapping[str, Mapping[str, str]]
    defaults: Mapping[str, str]
    date_formats: tuple[str, ...] = ()
    open_cases: str = "live"
    close_outcome: str = ""
    close_note: str = ""

    def column(self, name: str) -> str:
        """The CSV column a field comes from, or the field's name when only [defaults] gives it."""
        return self.columns.get(name, f"defaults.{name}")


@dataclass
class Outcome:
    rows: int = 0
    imported: int = 0
    already: int = 0
    rejected: list[tuple[int, str, list[str]]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    open: int = 0  # imported without a closure in the file: live, or closed as the mapping says

    def open_cases(self, m: ImportMapping) -> str:
        """What became of the cases this run imported that the file left open (the summary always says)."""
        if not self.open:
            return f"of the cases imported now, none was left open by the file (open_cases = {m.open_cases})"
        if m.open_cases == "close_as":
            return (f"{self.open} of the cases imported now were open in the file: closed as {m.close_outcome} "
                    "at their last event (open_cases = close_as)")
        return (f"{self.open} of the cases imported now were open in the file: running on fresh clocks from now, "
                "dispatched today if unanswered (open_cases = live)")


def load_mapping(path: Path) -> ImportMapping:
    """The mapping file (see docs/import.md); MappingError names the key that is wrong."""
    try:
        doc = tomlfile.read(path)
    except tomlfile.TomlError as exc:
        raise MappingError(f"{path}: {exc}") from None
    columns = _table(doc, "columns", path)
    defaults = _table(doc, "defaults", path)
    values = _table(doc, "values", path)
    unknown = sorted((set(columns) | set(defaults) | set(values)) - set(FIELDS))
    if unknown:
        raise MappingError(f"{path}: {unknown[0]} is not a field (known: {', '.join(FIELDS)})")
    missing = [f for f in REQUIRED if f not in columns and not defaults.get(f)]
    if missing:
        raise MappingError(f"{path}: {missing[0]} is required: name its CSV column in [columns] "
                           "or give a value in [defaults]")
    if "source_system" not in doc:
        raise MappingError(f"{path}: source_system is required (names the system the rows came from)")
    m = re.fullmatch(r"([+-])(\d\d):(\d\d)", doc.get("utc_offset", "+08:00"))
    if not m:
        raise MappingError(f"{path}: utc_offset must look like +08:00")
    sign = 1 if m.group(1) == "+" else -1
    offset = timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    encoding = doc.get("encoding", "utf-8-sig")
    try:
        "".encode(encoding)
    except LookupError:
        raise MappingError(f"{path}: encoding: unknown text encoding {encoding!r}") from None
    delimiter = doc.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise MappingError(f"{path}: delimiter must be one character, such as \",\" or \"\\t\"")
    formats = doc.get("date_formats", [])
    if not isinstance(formats, list) or not all(isinstance(f, str) and "%" in f for f in formats):
        raise MappingError(f"{path}: date_formats must be a list of strptime formats, such as [\"%m/%d/%Y %H:%M\"]")
    open_cases = doc.get("open_cases", "live")
    if open_cases not in OPEN_CASES:
        raise MappingError(f"{path}: open_cases must be one of {', '.join(OPEN_CASES)}")
    close_as = _table(doc, "close_as", path)
    if open_cases == "close_as" and close_as.get("outcome") not in OUTCOMES:
        raise MappingError(f"{path}: close_as.outcome is required with open_cases = \"close_as\" "
                           f"(one of {', '.join(sorted(OUTCOMES))})")
    return ImportMapping(str(doc["source_system"]), encoding, delimiter, offset, columns, values, defaults,
                         tuple(formats), open_cases, close_as.get("outcome", ""), close_as.get("note", ""))


def _table(doc: Mapping[str, Any], key: str, path: Path) -> dict[str, Any]:
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise MappingError(f"{path}: {key} must be a table ([{key}])")
    return table


def parse_time(raw: str, offset: timezone, column: str, formats: tuple[str, ...] = ()) -> datetime:
    """ISO 8601, or the first of `formats` (the built-in ones when none are given) that reads it."""
    text = raw.strip()
    if _EXCEL_SERIAL.match(text):
        raise ValueError(f"{column}: {text!r} looks like an Excel serial number; export dates as text")
    tried = formats or _FORMATS
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        for fmt in tried:
            try:
                t = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"{column}: {text!r} is not a date-time (accepted: ISO 8601, "
                             + ", ".join(tried) + "; set date_formats in the mapping)") from None
    return t if t.tzinfo else t.replace(tzinfo=offset)


@dataclass(frozen=True, slots=True)
class Rows:
    """How one file's CSV rows become import_case requests (built wherever the row is decided)."""

    mapping: ImportMapping
    columns: Mapping[str, int]  # field -> position in a row, for the fields the mapping names
    actor: Actor
    correlation_id: str

    def request(self, fields: list[str]) -> CommandRequest:
        """ValueError names the column and the problem."""
        m = self.mapping
        body = row_body({name: fields[i] if i < len(fields) else "" for name, i in self.columns.items()}, m)
        command_id = str(uuid.uuid5(NAMESPACE, f"{m.source_system}/{body['source_ref']}"))
        return CommandRequest("import_case", command_id, self.actor, body, correlation_id=self.correlation_id)


def row_body(raw: Mapping[str, str], m: ImportMapping) -> dict[str, Any]:
    """A row's mapped fields (field -> text) as an import_case body, its instants as datetimes."""
    v: dict[str, str] = {}
    for name in FIELDS:
        text = (raw.get(name) or "").strip() or m.defaults.get(name, "")
        values = m.values.get(name)
        v[name] = values.get(text, values.get("*", text)) if values and text else text
    for name in REQUIRED:
        if not v[name]:
            raise ValueError(f"{m.column(name)}: required ({name}) but empty")
    times = {name: parse_time(v[name], m.offset, m.column(name), m.date_formats) if v[name] else None
             for name in TIMES}
    submitted = times["submitted_at"]
    assert submitted is not None
    for name in ("replied_at", "closed_at"):
        t = times[name]
        if t is not None and t < submitted:
            raise ValueError(f"{m.column(name)}: {t.isoformat()} is before the submission ({submitted.isoformat()})")
    replied, closed = times["replied_at"], times["closed_at"]
    outcome, note = v["outcome"], ""
    if closed is None and m.open_cases == "close_as":
        # Closed as of its own last event, with the outcome and note the mapping chose.
        closed, outcome, note = replied or submitted, m.close_outcome, m.close_note
    return {
        "source_system": m.source_system, "source_ref": v["source_ref"],
        "enterprise": {"uscc": v["uscc"], "name": v["enterprise_name"],
                       "contact_name": v["contact_name"] or None, "contact_phone": v["contact_phone"] or None},
        "channel": v["channel"], "category": v["category"], "priority": v["priority"] or "normal",
        "jurisdiction": v["jurisdiction"], "title": v["title"], "content": v["content"],
        # Instants as parsed: parse_command takes an aware datetime as it takes ISO text.
        "submitted_at": submitted, "department": v["department"], "reply": v["reply"],
        "replied_at": replied, "closed_at": closed,
        "outcome": outcome if closed else "", "close_note": note,
    }


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that never became a command; the reason names the column."""

    reason: str


Chunk = list[tuple[int, list[str]]]  # (row number as a spreadsheet shows it, the row's fields)
RowResult = CommandResult | DomainError | Rejected
RunCommands = Callable[[list[CommandRequest]], Awaitable[list[CommandResult | DomainError]]]  # CommandService.run
CreateRows = Callable[[Rows, Chunk], Awaitable[list[RowResult]]]


def read_rows(csv_path: Path, m: ImportMapping, system_id: str) -> tuple[Outcome, Rows, Chunk]:
    """Read and split the file; turning rows into commands is left to whoever decides them."""
    raw = csv_path.read_bytes()
    try:
        text = raw.decode(m.encoding)
    except UnicodeDecodeError as exc:
        raise MappingError(f"{csv_path}: not {m.encoding} text ({exc}); set encoding in the mapping") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=m.delimiter)
    # The csv module refuses a field over 128 KiB and with it the whole file. The text is in
    # memory already, so a field may be as long as it: a row with too long a value is then
    # rejected by the rule for that field, naming it, and its neighbours are imported.
    limit = csv.field_size_limit(max(len(text), csv.field_size_limit()))
    try:
        header = next(reader, [])
        absent = sorted(set(m.columns.values()) - set(header))
        if absent:
            raise MappingError(f"{csv_path}: no column {absent[0]!r} in the header")
        rows = Rows(m, {name: header.index(column) for name, column in m.columns.items()},
                    Actor(system_id, Role.SYSTEM, person="history-import"),
                    f"import:{hashlib.sha256(raw).hexdigest()[:16]}")
        # Row numbers as a spreadsheet shows them: the header is row 1. Blank lines are no rows.
        chunk: Chunk = []
        before = last_from = reader.line_num  # physical lines read before the record at hand
        for line, fields in enumerate(reader, 2):
            last_from, before = before, reader.line_num
            if fields:
                chunk.append((line, fields))
        if chunk and _swallowed(text, last_from, chunk[-1][1], m.delimiter):
            raise MappingError(f"{csv_path}: row {chunk[-1][0]}: a quote opened on line {last_from + 1} is never "
                               "closed, so every later line would be read into one field; nothing imported")
    finally:
        csv.field_size_limit(limit)
    return Outcome(rows=len(chunk), header=header), rows, chunk


def _swallowed(text: str, skip: int, fields: list[str], delimiter: str) -> bool:
    """Whether the last record holds the rest of the file in a quoted field that never closes.

    The csv module reads an unclosed quote to the end of the file without a word, turning the
    rows after it into one field; only the last record can be such a one, and only if a field
    spans lines. Its strict mode, asked about that record alone, says so.
    """
    if not any("\n" in f or "\r" in f for f in fields):
        return False
    tail = "".join(io.StringIO(text, newline="").readlines()[skip:])
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


async def create_rows(run: RunCommands, rows: Rows, chunk: Chunk) -> list[RowResult]:
    """The chunk's rows as requests, and the good ones created together."""
    results: list[RowResult | None] = []
    reqs = []
    for _, fields in chunk:
        try:
            reqs.append(rows.request(fields))
            results.append(None)
        except ValueError as exc:
            results.append(Rejected(str(exc)))
    created = iter(await run(reqs) if reqs else [])
    return [r if r is not None else next(created) for r in results]


async def import_rows(create: CreateRows, out: Outcome, rows: Rows, lines: Chunk, *, concurrency: int = 2,
                      chunk_size: int = 500, progress: Callable[[int], None] | None = None) -> Outcome:
    """Group commit: a chunk of cases per transaction, `concurrency` chunks in flight."""
    gate = asyncio.Semaphore(concurrency)
    m = rows.mapping

    async def chunk(part: Chunk) -> None:
        async with gate:
            results = await create(rows, part)
        for (line, fields), result in zip(part, results, strict=True):
            if isinstance(result, Rejected):
                out.rejected.append((line, result.reason, fields))
            elif isinstance(result, DomainError):
                name = str(result.details.get("field") or "")
                column = m.columns.get(BODY_TO_COLUMN.get(name, name))
                reason = result.message.removeprefix(f"{name}: ")
                allowed = result.details.get("allowed")
                if allowed:
                    reason += f" (allowed: {', '.join(map(str, allowed))}; map others in [values.{name}])"
                out.rejected.append((line, f"{column or name or 'row'}: {reason}", fields))
            elif result.status == "duplicate":
                out.already += 1
            else:
                out.imported += 1
                out.open += _is_open(fields, rows)
        if progress is not None:
            progress(len(part))

    await asyncio.gather(*(chunk(lines[i:i + chunk_size]) for i in range(0, len(lines), chunk_size)))
    out.rejected.sort(key=lambda r: r[0])
    return out


class ParallelCreator:
    """`create_rows` spread over worker processes, each with its own connections.

    Mapping rows, deciding and encoding are CPU-bound Python, so one process cannot keep
    PostgreSQL busy; each chunk is still one transaction, so a case is whole or absent as before.
    Raw rows cross to the workers (pickling lists of strings is cheap), so the parent only
    splits the file and the workers start on the first chunk at once.
    """

    def __init__(self, settings: Settings, workers: int) -> None:
        self.workers = workers
        # Created before the parent reads the file or opens a connection, so the processes fork
        # from a parent with nothing to share, and their set-up overlaps the reading.
        self._pool = worker_pool(workers, _worker_start, settings, fork=True)

    async def __call__(self, rows: Rows, chunk: Chunk) -> list[RowResult]:
        # Results come back as tuples: pickling frozen slotted dataclasses runs Python code per object.
        results = await asyncio.get_running_loop().run_in_executor(self._pool, _worker_create, rows, chunk)
        return [CommandResult(*r) if isinstance(r, tuple) else r for r in results]

    def close(self) -> None:
        self._pool.shutdown()


class _Worker:
    """The event loop and runtime of one import worker process."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.runtime = self.loop.run_until_complete(Runtime(settings, pool_size=2).open())

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.close())
        self.loop.close()


_worker: _Worker | None = None  # set only inside an import worker process


def _worker_start(settings: Settings) -> None:
    global _worker
    _worker = _Worker(settings)
    settle_gc()  # deciding and encoding a chunk allocates fast: what the worker built stays put
    # A forked process ends with os._exit, past atexit; multiprocessing runs its finalizers.
    multiprocessing.util.Finalize(_worker, _worker.close, exitpriority=10)


def _worker_create(rows: Rows, chunk: Chunk) -> list[tuple[str, str, str, int, tuple[str, ...]] | DomainError | Rejected]:
    assert _worker is not None, "not an import worker process"
    results = _worker.loop.run_until_complete(create_rows(_worker.runtime.service.run, rows, chunk))
    return [(r.status, r.command_id, r.case_id, r.seq, r.event_ids) if isinstance(r, CommandResult) else r
            for r in results]


def _is_open(fields: list[str], rows: Rows) -> bool:
    at = rows.columns.get("closed_at")
    return at is None or at >= len(fields) or not fields[at].strip()


def write_rejects(path: Path, out: Outcome) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "reason", *out.header])
        for line, reason, fields in out.rejected:
            w.writerow([line, reason, *fields])
