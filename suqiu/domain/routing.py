"""智能分拨: what a routing suggestion holds, which history teaches it, what may be suggested,
and when two appeals are the same problem (重复件).

The model itself (suqiu.base.textmodel) only scores text; every rule about the organisation and
the record lives here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from suqiu.domain.figures import rate
from suqiu.domain.refdata import Category, Department, current

TOP = 3  # categories and departments named in a suggestion
MIN_CASES = 200  # labelled cases a model needs before it is trained
MIN_PER_CLASS = 2  # a class seen once cannot be held out and learnt both
HELD_OUT = 0.2  # the newest share of the history, on which a model is judged
DUPLICATE_SIMILARITY = 0.6  # character-bigram Dice from which two appeals are the same problem
DUPLICATE_WINDOW = timedelta(days=7)  # open cases of one jurisdiction compared with a new one
DUPLICATES = 5  # the most similar named in a suggestion
# The importer's actor (suqiu import): the history it brings is not scored, only live appeals.
HISTORY_IMPORT = "history-import"


@dataclass(frozen=True, slots=True)
class Scored:
    """A suggested category or department and the model's score for it (0..1, the best first)."""

    code: str
    score: float


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An open case that looks like the same problem (重复件), and how alike the texts are (0..1)."""

    case_id: str
    similarity: float


@dataclass(frozen=True, slots=True)
class Routing:
    """The suggestion recorded on a case: which model, its best categories and departments, and
    the open cases it looks like."""

    model: str
    categories: tuple[Scored, ...]
    departments: tuple[Scored, ...]
    duplicates: tuple[Duplicate, ...]


def label_department(departments: Mapping[str, Department], replied_by: str | None) -> str | None:
    """What a case teaches about departments: the one that finally replied, as it answers today
    (a merged department's history teaches its successor); None when it has no successor."""
    code = current(departments, replied_by)
    if code is None or code not in departments or not departments[code].active:
        return None
    return code


def label_category(categories: Mapping[str, Category], category: str) -> str | None:
    """What a case teaches about categories: its own, unless the category is retired since."""
    found = categories.get(category)
    return None if found is None or found.retired else category


def suggestable_departments(departments: Mapping[str, Department], scored: Iterable[Scored]) -> tuple[Scored, ...]:
    """The best `TOP` departments a dispatcher may still send to: a merged one's score goes to its
    successor (it takes the best of the two), a dissolved one is never named."""
    best: dict[str, float] = {}
    for s in scored:
        code = label_department(departments, s.code)
        if code is not None and s.score > best.get(code, -1.0):
            best[code] = s.score
    return _top(best)


def suggestable_categories(categories: Mapping[str, Category], scored: Iterable[Scored]) -> tuple[Scored, ...]:
    """The best `TOP` categories still in use."""
    return _top({s.code: s.score for s in scored if label_category(categories, s.code) is not None})


def _top(scores: Mapping[str, float]) -> tuple[Scored, ...]:
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    return tuple(Scored(code, round(score, 4)) for code, score in ranked)


_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def shingles(text: str) -> frozenset[str]:
    """The character bigrams of `text` after width folding, lower case and without spaces or
    punctuation: 'Ａ３区 大道' and 'a3区大道' give the same set."""
    folded = _NOISE.sub("", unicodedata.normalize("NFKC", text).lower())
    if len(folded) < 2:
        return frozenset({folded}) if folded else frozenset()
    return frozenset(folded[i:i + 2] for i in range(len(folded) - 1))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient of two shingle sets: 1.0 the same text, 0.0 nothing in common."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


def duplicates_of(mine: frozenset[str], others: Iterable[tuple[str, frozenset[str]]]) -> tuple[Duplicate, ...]:
    """The open cases (case id, shingles) whose text is near-identical to the one of `mine`
    (its shingles), most alike first."""
    found = [Duplicate(case_id, round(sim, 4)) for case_id, other in others
             if (sim := similarity(mine, other)) >= DUPLICATE_SIMILARITY]
    return tuple(sorted(found, key=lambda d: (-d.similarity, d.case_id))[:DUPLICATES])


def auto_dispatch_to(category: str, departments: tuple[Scored, ...], thresholds: Mapping[str, float]) -> str | None:
    """The department the system dispatches to on its own (自动派单): the first suggestion, when the
    deployment turned auto-dispatch on for the case's category and the score reaches its threshold."""
    threshold = thresholds.get(category)
    if threshold is None or not departments or departments[0].score < threshold:
        return None
    return departments[0].code


HEADS = ("category", "department")
FIGURES = ("accuracy", "macro_f1", "top3")


def worse_than_active(new: Mapping[str, Mapping[str, float]], old: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Why a new model may not replace the active one, both judged on the same held-out cases
    (none: it is no worse on any figure of any head)."""
    return [f"{head} {figure} {new[head][figure]:.4f} < {old[head][figure]:.4f}"
            for head in HEADS for figure in FIGURES if new[head][figure] < old[head][figure]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one suggestion: the month it was made (Beijing time), the departments it
    named (best first), the first dispatch after it, and who finally replied (None: not yet)."""

    month: str
    suggested: tuple[str, ...]
    dispatched_to: str | None
    replied_by: str | None


_COUNTS = ("suggested", "dispatched", "followed", "answered", "top1", "top3")


def quality(outcomes: Iterable[Outcome], departments: Mapping[str, Department]) -> dict[str, Any]:
    """How good the suggestions were, per month and overall: how often the department that finally
    replied was the first suggestion (top-1) or among the three (top-3), and how often the first
    dispatch followed the first suggestion. Departments are compared as they answer today."""
    months: dict[str, dict[str, int]] = {}
    for o in outcomes:
        if not o.suggested:
            continue  # it named no department (none the model knows is in use)
        m = months.setdefault(o.month, dict.fromkeys(_COUNTS, 0))
        m["suggested"] += 1
        if o.dispatched_to is not None:
            m["dispatched"] += 1
            m["followed"] += current(departments, o.dispatched_to) == o.suggested[0]
        final = label_department(departments, o.replied_by)
        if final is not None:
            m["answered"] += 1
            m["top1"] += final == o.suggested[0]
            m["top3"] += final in o.suggested[:TOP]
    total = {k: sum(m[k] for m in months.values()) for k in _COUNTS}
    return {"months": [{"month": month, **_rates(m)} for month, m in sorted(months.items())],
            "overall": _rates(total)}


def _rates(m: Mapping[str, int]) -> dict[str, Any]:
    return {"suggested": m["suggested"], "dispatched": m["dispatched"], "answered": m["answered"],
            "followed_rate": rate(m["followed"], m["dispatched"]), "top1_accuracy": rate(m["top1"], m["answered"]),
            "top3_accuracy": rate(m["top3"], m["answered"])}
