"""The enterprise's file (企业服务档案): its appeals across channels and gatherings, and its own
figures, 问题解决率 and 满意率, by the same definitions as the 三率."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from suqiu.domain.figures import rate
from suqiu.domain.model import HANDLED, OPEN, SATISFIED


def file_figures(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and rates over an enterprise's cases as they stand now (status, outcome, rating).

    问题解决率: closures resolved ÷ effective closures (resolved, explained, unresolvable; not a
    withdrawal or a duplicate). 满意率: rated 满意 or 基本满意 ÷ rated. None with no denominator.
    """
    handled = [c for c in cases if c["status"] == "closed" and c["outcome"] in HANDLED]
    resolved = sum(c["outcome"] == "resolved" for c in handled)
    rated = [c for c in cases if c["rating"] is not None]
    satisfied = sum(c["rating"] in SATISFIED for c in rated)
    return {
        "counts": {"appeals": len(cases), "open": sum(c["status"] in OPEN for c in cases),
                   "handled": len(handled), "resolved": resolved, "rated": len(rated), "satisfied": satisfied},
        "resolution_rate": rate(resolved, len(handled)),
        "satisfaction_rate": rate(satisfied, len(rated)),
        "channels": dict(sorted(Counter(c["channel"] for c in cases).items())),
    }
