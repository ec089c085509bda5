"""TOML from operators' files (import mappings, SLA policies, the organisation): read one way.

tomllib raises RecursionError, not its own error, on arrays nested a few thousand deep, and a
file that is not UTF-8 fails before TOML is parsed at all; each reader turned only some of
these into a refusal. Here each becomes a TomlError whose text the reader puts after the file's name.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class TomlError(ValueError):
    """The text is not a TOML document; the message says why, without the file's name."""


def parse(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlError("not valid TOML: nested too deeply") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise TomlError(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise TomlError(f"cannot be read: {exc.strerror or exc}") from None


def read(path: Path) -> dict[str, Any]:
    return parse(read_text(path))
