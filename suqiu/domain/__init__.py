"""Floor 0, the pure domain core: decide(state, command) -> events, evolve(state, event) -> state.

Nothing in this package reads a clock, opens a socket or touches a file: time, ids and
reference data arrive as arguments, so the same inputs always give the same outputs.
"""

from suqiu.domain.commands import Command, CommandMeta
from suqiu.domain.decide import decide
from suqiu.domain.errors import DomainError
from suqiu.domain.events import EVENT_TYPES, Event, EventPayload
from suqiu.domain.evolve import evolve, replay_state
from suqiu.domain.model import Actor, Case, Role, Status

__all__ = [
    "EVENT_TYPES",
    "Actor",
    "Case",
    "Command",
    "CommandMeta",
    "DomainError",
    "Event",
    "EventPayload",
    "Role",
    "Status",
    "decide",
    "evolve",
    "replay_state",
]
