"""Signed commands on Kafka: who produced a record is proven by its headers, never by its payload.

A producer signs each command record with its API key: `suqiu-key` carries the key's prefix
(as `suqiu keys list` shows it) and `suqiu-signature` the hex HMAC-SHA256 of the record's
value, keyed by the SHA-256 of the secret. The worker finds the key by its prefix, checks the
signature and takes the actor (system, role, department) and the key's bindings from the key.
Kafka records do not carry the producing principal, so this is how a worker can know it.

The HMAC key is the digest the database already holds for every key, so the secret itself
never travels; whoever can read api_keys could sign, as they could write the store anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from suqiu.domain.access import Principal
from suqiu.store.keys import PREFIX_LENGTH, digest

KEY_HEADER = "suqiu-key"
SIGNATURE_HEADER = "suqiu-signature"


def signature(key_hash: bytes, value: bytes) -> str:
    return hmac.new(key_hash, value, hashlib.sha256).hexdigest()


def sign(secret: str, value: bytes) -> list[tuple[str, bytes]]:
    """The headers that sign `value` with the API key `secret` (for producers of commands)."""
    return [(KEY_HEADER, secret[:PREFIX_LENGTH].encode()),
            (SIGNATURE_HEADER, signature(digest(secret), value).encode())]


def claimed_key(headers: Sequence[tuple[str, bytes]]) -> tuple[str, str] | None:
    """(key prefix, signature) as the record's headers give them, or None when it is unsigned."""
    found = {k: v for k, v in headers if k in (KEY_HEADER, SIGNATURE_HEADER)}
    try:
        return found[KEY_HEADER].decode("ascii"), found[SIGNATURE_HEADER].decode("ascii")
    except (KeyError, UnicodeDecodeError):
        return None


def verified(candidates: Iterable[tuple[bytes, Principal]], value: bytes, claimed: str) -> Principal | None:
    """The principal of the candidate key whose signature over `value` is `claimed`."""
    for key_hash, principal in candidates:
        if hmac.compare_digest(signature(key_hash, value), claimed):
            return principal
    return None
