"""Unified social credit code (统一社会信用代码) check, GB 32100-2015."""

from __future__ import annotations

from operator import mul

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_ORG_VALUE = {c: i for i, c in enumerate(ORG_ALPHABET)}


def uscc_problem(code: str) -> str | None:
    """Why `code` is not a valid USCC, or None when it is."""
    if len(code) != 18:
        return "must be 18 characters"
    try:
        values = [_VALUE[c] for c in code]
    except KeyError:
        return "contains a character outside GB 32100 (0-9 and A-Y without I, O, S, V, Z)"
    if ALPHABET[-sum(map(mul, values, WEIGHTS)) % 31] != code[17]:
        return "checksum (18th character) does not match"
    try:
        org = [_ORG_VALUE[c] for c in code[8:16]]
    except KeyError:
        return "organisation code (characters 9-17) is malformed"
    org_check = 11 - sum(map(mul, org, ORG_WEIGHTS)) % 11
    if code[16] != {10: "X", 11: "0"}.get(org_check, str(org_check)):
        return "organisation code check digit (17th character) does not match"
    return None


def complete_uscc(first16: str) -> str:
    """Append the organisation-code check and the GB 32100 check character (fixtures, demo)."""
    org_check = 11 - sum(ORG_ALPHABET.index(c) * w for c, w in zip(first16[8:16], ORG_WEIGHTS, strict=False)) % 11
    first17 = first16 + {10: "X", 11: "0"}.get(org_check, str(org_check))
    check = 31 - sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=False)) % 31
    return first17 + ALPHABET[check % 31]
