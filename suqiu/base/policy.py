"""Load the SLA policy (时限) from TOML: goals per category and priority, calendar and overrides."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from datetime import date, time
from importlib import resources
from pathlib import Path
from typing import Any

from suqiu.base import tomlfile
from suqiu.base.calendar import ChinaWorkdays
from suqiu.domain.model import PRIORITIES
from suqiu.domain.refdata import Category
from suqiu.domain.sla import WARNING_SHARE, BusinessCalendar, Goal, SlaPolicy

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|wd)\s*$")
_GOAL_KEYS = {"accept": "accept_minutes", "resolve": "resolve_minutes", "follow_up": "follow_up_minutes"}


class PolicyError(Exception):
    """The policy file is wrong; the message names the file and the key."""


def policy_document(path: str | Path | None = None) -> str:
    """The policy file's text (the shipped default without a path)."""
    if path is None:
        return resources.files("suqiu").joinpath("policies/default.toml").read_text("utf-8")
    try:
        return tomlfile.read_text(Path(path))
    except tomlfile.TomlError as exc:
        raise PolicyError(f"SUQIU_SLA_POLICY: {path}: {exc}") from None


def load_policy(path: str | Path | None = None, text: str | None = None) -> SlaPolicy:
    """The policy at `path` (or given as `text`), or the shipped default (typical district goals)."""
    text = policy_document(path) if text is None else text
    source, base = ("default.toml", None) if path is None else (str(path), Path(path).parent)
    try:
        doc = tomlfile.parse(text)
    except tomlfile.TomlError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    return parse_policy(doc, source=source, base=base, digest=hashlib.sha256(text.encode()).hexdigest()[:12])


def parse_policy(doc: Mapping[str, Any], *, source: str = "policy", base: Path | None = None,
                 digest: str = "") -> SlaPolicy:
    cal_doc = doc.get("calendar", {})
    overrides, sources = _overrides(cal_doc, source, base)
    periods = tuple((_time(a, source, "calendar.periods"), _time(b, source, "calendar.periods"))
                    for a, b in cal_doc.get("periods", [["09:00", "12:00"], ["13:30", "17:30"]]))
    if not periods or any(a >= b for a, b in periods):
        raise PolicyError(f"{source}: calendar.periods must be non-empty [start, end] pairs with start < end")
    ordered = sorted(periods)
    if any(b > c for (_, b), (c, _) in itertools.pairwise(ordered)):
        raise PolicyError(f"{source}: calendar.periods must not overlap")
    calendar = BusinessCalendar(ChinaWorkdays(overrides, sources), periods)
    day = calendar.day_seconds // 60
    if "default" not in doc:
        raise PolicyError(f"{source}: [default] goals are required (accept, resolve, follow_up)")
    default = _goal(doc["default"], None, day, source, "default")
    goals: dict[tuple[str, str], Goal] = {}
    for i, g in enumerate(doc.get("goal", [])):
        where = f"goal[{i}]"
        category, priority = g.get("category", "*"), g.get("priority", "*")
        if not isinstance(category, str) or not category:
            raise PolicyError(f"{source}: {where}.category: a category code or \"*\"")
        if priority != "*" and priority not in PRIORITIES:
            raise PolicyError(f"{source}: {where}.priority: unknown priority {priority!r}")
        goals[(category, priority)] = _goal(g, default, day, source, where)
    share = float(doc.get("warning_share", WARNING_SHARE))
    if not 0 < share < 1:
        raise PolicyError(f"{source}: warning_share must be between 0 and 1")
    return SlaPolicy(
        calendar=calendar, default=default, goals=goals, warning_share=share,
        supervision_after_minutes=_minutes(doc.get("supervision_after", "4h"), day, source, "supervision_after"),
        max_extensions=int(doc.get("max_extensions", 1)),
        version=str(doc.get("version", "")) or digest or "default",
    )


def _goal(g: Mapping[str, Any], inherit: Goal | None, day: int, source: str, where: str) -> Goal:
    values: dict[str, Any] = {}
    for key, attr in _GOAL_KEYS.items():
        if key in g:
            values[attr] = _minutes(g[key], day, source, f"{where}.{key}")
        elif inherit is not None:
            values[attr] = getattr(inherit, attr)
        else:
            raise PolicyError(f"{source}: {where}.{key} is required")
    values["wall_clock"] = bool(g.get("wall_clock", inherit.wall_clock if inherit else False))
    return Goal(**values)


def _minutes(value: Any, day: int, source: str, where: str) -> int:
    """'30m', '2h', '5d' (working days on this calendar) or a number of minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _DURATION.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise PolicyError(f"{source}: {where}: {value!r} is not a duration like '30m', '2h' or '5d'")
    n, unit = float(m.group(1)), m.group(2)
    return round(n * {"m": 1, "min": 1, "h": 60, "d": day, "wd": day}[unit])


def _time(value: str, source: str, where: str) -> time:
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise PolicyError(f"{source}: {where}: {value!r} is not a time like '09:00'") from None


def _overrides(cal: Mapping[str, Any], source: str, base: Path | None) -> tuple[dict[date, bool], dict[int, str]]:
    """Holidays and make-up working days (调休) for years chinesecalendar does not know, and
    which file gave each year."""
    docs: list[tuple[str, Mapping[str, Any]]] = [(source, cal)]
    file = cal.get("override_file")
    if file:
        path = Path(file) if base is None or Path(file).is_absolute() else base / file
        try:
            docs.append((str(path), tomlfile.read(path)))
        except tomlfile.TomlError as exc:
            raise PolicyError(f"{source}: calendar.override_file: cannot load {path}: {exc}") from None
    out: dict[date, bool] = {}
    sources: dict[int, str] = {}
    for where, d in docs:
        for key, workday in (("holidays", False), ("workdays", True)):
            for day in d.get(key, []):
                try:
                    when = day if isinstance(day, date) else date.fromisoformat(str(day))
                except ValueError:
                    raise PolicyError(f"{where}: {key}: {day!r} is not a date like 2027-10-01") from None
                out[when] = workday
                sources[when.year] = where
    return out, sources


def unknown_categories(policy: SlaPolicy, categories: Mapping[str, Category]) -> list[str]:
    """The categories the policy's goals name that the organisation lacks or has retired: their
    goals would never apply, so the policy is refused (at start, and by `suqiu policy check`)."""
    return sorted(c for c, _ in policy.goals if c != "*" and (c not in categories or categories[c].retired))
