"""Personal information (个人信息, PIPL): what counts as it, how it is marked, masked and shown.

A submit's contact (name and phone) and the phone and ID-card numbers typed into its title or
content are personal fields. The shell seals them per data subject before the event is decided
(suqiu.service.personal); the event keeps only the subject's id, the ciphertext, and in the
texts a mark where each number stood. This module is the pure part: finding the numbers,
the marks, the masks, and what a reader is shown. Who is entitled to plain text is
`suqiu.domain.access.sees_personal`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

ERASED = "[已删除]"
SEALED = "[已加密]"  # where a sealed field is shown with no key at hand (an auditor's replay)
# Where a number stood in a title or content: SUB, a kind letter, the item's index, SUB. SUB is
# a control character every text field refuses at the boundary (suqiu.domain.inputs), so a mark
# can only come from sealing.
MARK = "\x1a"
_MARKED = re.compile(f"{MARK}([PI])(\\d+){MARK}")
KIND_LABELS = {"P": "[电话]", "I": "[证件号]"}

_MOBILE = r"(?:\+?86[- ]?)?1[3-9]\d{9}"
_LANDLINE = r"0\d{2,3}-\d{7,8}"
_ID_CARD = r"\d{17}[\dXx]"
_NUMBERS = re.compile(f"(?<![0-9A-Za-z])(?:(?P<I>{_ID_CARD})|(?P<P>{_MOBILE}|{_LANDLINE}))(?![0-9A-Za-z])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A submit's personal fields as the event stores them: the subject's id and the ciphertext."""

    subject: str
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Personal:
    """The plain personal fields of one submit: the contact, and the numbers pulled from its texts
    (in the order of their marks' indexes)."""

    contact_name: str | None = None
    contact_phone: str | None = None
    items: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.contact_name or self.contact_phone or self.items)

    def to_bytes(self) -> bytes:
        return json.dumps({"contact_name": self.contact_name, "contact_phone": self.contact_phone,
                           "items": list(self.items)}, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Personal:
        raw = json.loads(data)
        return cls(raw["contact_name"], raw["contact_phone"], tuple(raw["items"]))


def valid_id_card(number: str) -> bool:
    """An 18-digit resident ID number (GB 11643): a real birth date and the ISO 7064 check digit."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= 2100:
        return False
    check = _ID_CHECK[sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True)) % 11]
    return number[17].upper() == check


def pull_numbers(texts: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """Each text with the phone and ID-card numbers in it replaced by marks, and the numbers,
    indexed across all the texts in order."""
    items: list[str] = []

    def replace(m: re.Match[str]) -> str:
        kind = "I" if m.group("I") else "P"
        if kind == "I" and not valid_id_card(m.group()):
            return m.group()  # 18 digits that are no ID number: an account, an order number
        items.append(m.group())
        return f"{MARK}{kind}{len(items) - 1}{MARK}"

    return [_NUMBERS.sub(replace, t) for t in texts], tuple(items)


def mask(value: str, kind: str = "P") -> str:
    """A number with its middle starred: 138****5678; an ID number keeps its region and last four."""
    keep_head = 6 if kind == "I" else 3
    if len(value) <= keep_head + 4:
        return "*" * len(value)
    return value[:keep_head] + "*" * (len(value) - keep_head - 4) + value[-4:]


def mask_name(name: str) -> str:
    """A name with all but its first character starred: 王经理 -> 王**."""
    return name[:1] + "*" * (len(name) - 1)


def shown_text(text: str, personal: Personal | None, plain: bool) -> str:
    """A marked text for a reader: each number plain or masked; `[已删除]` once the subject is
    erased (personal None)."""
    if MARK not in text:
        return text

    def show(m: re.Match[str]) -> str:
        if personal is None:
            return ERASED
        index = int(m.group(2))
        if index >= len(personal.items):
            return KIND_LABELS[m.group(1)]
        value = personal.items[index]
        return value if plain else mask(value, m.group(1))

    return _MARKED.sub(show, text)


def labelled(text: str) -> str:
    """A marked text where no key is at hand (read models, reports, exports): each number named by
    its kind, [电话] or [证件号]."""
    if MARK not in text:
        return text
    return _MARKED.sub(lambda m: KIND_LABELS[m.group(1)], text)


def unmarked(text: str) -> str:
    """A marked text with a space where each number stood: for reading what it is about (the
    routing model), where which number it was says nothing."""
    return _MARKED.sub(" ", text) if MARK in text else text


def shown_contact(personal: Personal | None, plain: bool) -> dict[str, str | None]:
    """The contact as a reader may see it (personal None: erased)."""
    if personal is None:
        return {"contact_name": ERASED, "contact_phone": ERASED}
    name, phone = personal.contact_name, personal.contact_phone
    if plain:
        return {"contact_name": name, "contact_phone": phone}
    return {"contact_name": None if name is None else mask_name(name),
            "contact_phone": None if phone is None else mask(phone)}


def shown_enterprise(uscc: str, name: str, personal: Personal | None, plain: bool) -> dict[str, str | None]:
    """The enterprise of a case as a reader may see it: its contact plain, masked or erased."""
    return {"uscc": uscc, "name": name, **shown_contact(personal, plain)}


def unopened_contact(contact_name: str | None, contact_phone: str | None, sealed: bool,
                     erased: bool) -> dict[str, str | None]:
    """The contact where no key is at hand (the replay tools, the board's as-of view): sealed
    fields named as such, a contact stored before sealing masked."""
    if erased:
        return {"contact_name": ERASED, "contact_phone": ERASED}
    if sealed:
        return {"contact_name": SEALED, "contact_phone": SEALED}
    return shown_contact(Personal(contact_name, contact_phone), plain=False)
