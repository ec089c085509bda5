"""Field encryption: AES-256-GCM under a key per data subject, each key wrapped by a master key.

The `cryptography` package does the cipher; this module fixes how it is used, so that every
process seals and opens the same way. Deleting a subject's key (crypto-shredding) makes every
ciphertext sealed under it unreadable, while the stored bytes, and so the hash chain, stay as
they were.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
NONCE_SIZE = 12
MASTER_KEY_SETTING = "SUQIU_MASTER_KEY_FILE"


class SealError(ValueError):
    """A ciphertext or a wrapped key that does not open: tampered with, or under another key."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=8 * KEY_SIZE)


def seal(key: bytes, subject: str, plaintext: bytes) -> bytes:
    """nonce || AES-GCM(plaintext), bound to `subject` as associated data, so a ciphertext moved
    to another subject's event does not open."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, subject.encode())


def unseal(key: bytes, subject: str, sealed: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], subject.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealError(f"personal data of subject {subject} does not open: tampered with or another key") from exc


class MasterKey:
    """The deployment's master key: wraps subject keys, and keys the contact lookup (HMAC), so
    the key table holds neither a usable key nor a phone number."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a master key is {KEY_SIZE} bytes, not {len(key)}")
        self._key = key
        self._lookup = hmac.new(key, b"suqiu contact lookup v1", hashlib.sha256).digest()
        self._signing = hmac.new(key, b"suqiu stored artefact v1", hashlib.sha256).digest()

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        """The key in `path`: 32 bytes in base64, as `suqiu pii keygen` writes it."""
        try:
            return cls(base64.b64decode(path.read_text("ascii").strip(), validate=True))
        except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as exc:
            raise SystemExit(f"{MASTER_KEY_SETTING}={path}: not a master key ({exc}); "
                             "`suqiu pii keygen FILE` writes one") from None

    @staticmethod
    def write_new(path: Path) -> None:
        """A new master key in `path`, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(base64.b64encode(new_key()).decode() + "\n")

    def wrap(self, subject: str, key: bytes) -> bytes:
        return seal(self._key, "subject-key:" + subject, key)

    def unwrap(self, subject: str, wrapped: bytes) -> bytes:
        return unseal(self._key, "subject-key:" + subject, wrapped)

    def lookup(self, *parts: str) -> bytes:
        """A keyed digest that finds a contact's subject again without storing the contact."""
        return hmac.new(self._lookup, "\x1f".join(parts).encode(), hashlib.sha256).digest()

    def signature(self, data: bytes) -> bytes:
        """A keyed digest of something the deployment stored (a routing model): whoever can write
        the database but has not the master key cannot make a changed copy pass `verified`."""
        return hmac.new(self._signing, data, hashlib.sha256).digest()

    def verified(self, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.signature(data), signature)
