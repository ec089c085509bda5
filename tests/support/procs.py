"""Processes as /proc shows them, for tests that check what a process started and left behind."""

from __future__ import annotations

from pathlib import Path


def processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process that is not a zombie."""
    found: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[0] != "Z":
            found[int(entry.name)] = (int(stat[1]), cmdline)
    return found


def descendants(pid: int) -> set[int]:
    """Every process below `pid`."""
    parents = {p: parent for p, (parent, _) in processes().items()}
    found, frontier = set[int](), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
