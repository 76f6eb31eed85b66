"""What the live ACD emits, for agent desktops and the wallboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AgentChanged:
    agent_id: str
    view: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallOffered:
    call_id: str
    agent_id: str


@dataclass(frozen=True)
class QueueChanged:
    """Something about the waiting calls changed; the wallboard recomputes its state."""


AcdEvent = AgentChanged | CallOffered | QueueChanged
