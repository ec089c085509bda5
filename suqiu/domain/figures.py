"""How every figure (三率, 解决率, 满意率, the routing figures) gives a rate."""

from __future__ import annotations


def rate(part: float, whole: float) -> float | None:
    """A share to four places; None (shown —) with no denominator."""
    return round(part / whole, 4) if whole else None
