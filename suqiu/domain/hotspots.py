"""热点: appeals of a window grouped by what they are about, ranked by heat, each group named by its
own words. Pure: the caller reads the window's appeals (projections.queries.window_appeals).

Appeals are compared as sets of character bigrams (routing.shingles), without the bigrams that
a fifth of a large window shares (我公司, 问题, 希望: they say nothing of the matter). Oldest first, each
appeal joins the group whose first appeal it is most alike (Dice from SIMILARITY), else starts
one (leader clustering: one pass, and a group never drifts from what started it). A group of
one is no hot issue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from suqiu.domain.personal import labelled
from suqiu.domain.routing import shingles, similarity

WINDOW = timedelta(days=7)
SIMILARITY = 0.3
COMMON = 0.2  # a bigram in at least this share of the window's appeals is not compared …
COMMON_MIN = 20  # … once it is in this many: a small window has no common words to tell
LABEL_MIN, LABEL_MAX = 2, 12  # characters of a label
MAX_APPEALS = 20_000  # the window's appeals grouped at most (the newest)


@dataclass(frozen=True, slots=True)
class Appeal:
    """One appeal of the window as grouping needs it."""

    case_id: str
    submitted_at: datetime
    uscc: str
    department: str | None
    category: str
    title: str
    content: str
    source_ref: str = ""  # 工单编号


@dataclass
class _Group:
    members: list[Appeal]
    seed: frozenset[str]  # the bigrams of its first appeal


def hotspots(appeals: Sequence[Appeal], limit: int = 20) -> list[dict[str, Any]]:
    """The hot issues among `appeals`, hottest first: most distinct enterprises, then most
    appeals, then the most recent."""
    sets = [shingles(labelled(a.title) + labelled(a.content)) for a in appeals]
    frequency: Counter[str] = Counter(g for s in sets for g in s)
    common = {g for g, n in frequency.items() if n >= max(COMMON_MIN, COMMON * len(appeals))}
    groups: list[_Group] = []
    index: dict[str, set[int]] = {}
    for appeal, grams in sorted(zip(appeals, sets, strict=True), key=lambda p: (p[0].submitted_at, p[0].case_id)):
        grams = frozenset(grams - common)
        best, best_sim = None, SIMILARITY
        for i in {i for g in grams for i in index.get(g, ())}:
            sim = similarity(grams, groups[i].seed)
            if sim > best_sim or (sim == best_sim and best is None):
                best, best_sim = i, sim
        if best is None:
            best = len(groups)
            groups.append(_Group([], grams))
            for g in grams:
                index.setdefault(g, set()).add(best)
        groups[best].members.append(appeal)
    hot = [g.members for g in groups if len(g.members) > 1]
    hot.sort(key=lambda m: (-len({a.uscc for a in m}), -len(m), -max(a.submitted_at for a in m).timestamp()))
    return [_described(m) for m in hot[:limit]]


def _described(members: list[Appeal]) -> dict[str, Any]:
    return {
        "label": label([a.title for a in members]),
        "enterprises": len({a.uscc for a in members}),
        "appeals": len(members),
        "first": min(a.submitted_at for a in members),
        "latest": max(a.submitted_at for a in members),
        "cases": [{"case_id": a.case_id, "source_ref": a.source_ref}
                  for a in sorted(members, key=lambda a: (a.submitted_at, a.case_id), reverse=True)],
        "departments": dict(Counter(a.department for a in members if a.department).most_common()),
        "categories": dict(Counter(a.category for a in members).most_common()),
    }


def label(titles: Sequence[str]) -> str:
    """A short name from the group's own words: the longest run of characters that most of its
    titles share (at least half of them), e.g. 营业执照变更登记; else the first title, cut."""
    texts = ["".join(ch for ch in labelled(t) if ch.isalnum()) for t in titles]
    need = max(2, (len(texts) + 1) // 2)
    for n in range(LABEL_MAX, LABEL_MIN - 1, -1):
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update({t[i:i + n] for i in range(len(t) - n + 1)})
        found = [(c, g) for g, c in counts.items() if c >= need]
        if found:
            return max(found, key=lambda cg: (cg[0], cg[1]))[1]
    return titles[0][:LABEL_MAX] if titles else ""
