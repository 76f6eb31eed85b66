"""Asterisk is ours to keep alive: a dead one is restarted, and everyone can see the fault.

`PbxHealth` is the pure record of the PBX's state (up, down, restarting) with the back-off
between restart attempts; `AsteriskKeeper` watches the process we own and restarts it. While
Asterisk is down no resident can reach the city (SIP is silent), so the fault is shown on the
wallboard and in the health endpoint, and the restart is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

# Seconds before each restart attempt; the last repeats. A crash loop must not spin the CPU.
RESTART_BACKOFF = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
# Up this long, a later death starts the back-off from the beginning again.
STABLE_SECONDS = 60.0


class PbxState(StrEnum):
    UP = "up"
    DOWN = "down"
    RESTARTING = "restarting"


@dataclass
class PbxHealth:
    """What the service knows of its Asterisk. Time is passed in."""

    state: PbxState = PbxState.UP
    since: float = 0.0
    restarts: int = 0  # successful restarts since the service started
    failed_attempts: int = 0  # attempts in a row that failed, for the back-off
    last_problem: str = ""
    up_since: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def died(self, at: float, problem: str) -> None:
        if at - self.up_since >= STABLE_SECONDS:
            self.failed_attempts = 0
        self._enter(PbxState.DOWN, at, problem)

    def restarting(self, at: float) -> None:
        self._enter(PbxState.RESTARTING, at, self.last_problem)

    def restart_failed(self, at: float, problem: str) -> None:
        self.failed_attempts += 1
        self._enter(PbxState.DOWN, at, problem)

    def restarted(self, at: float) -> None:
        self.restarts += 1
        self.up_since = at
        self._enter(PbxState.UP, at, self.last_problem)

    def next_delay(self) -> float:
        return RESTART_BACKOFF[min(self.failed_attempts, len(RESTART_BACKOFF) - 1)]

    @property
    def ok(self) -> bool:
        return self.state is PbxState.UP

    def view(self, now: float) -> dict[str, Any]:
        """For the wallboard and the health endpoint (no personal data)."""
        return {
            "state": self.state.value,
            "ok": self.ok,
            "for_seconds": round(max(now - self.since, 0.0), 1),
            "restarts": self.restarts,
            "last_problem": self.last_problem,
        }

    def _enter(self, state: PbxState, at: float, problem: str) -> None:
        self.state, self.since, self.last_problem = state, at, problem
        self.history = [*self.history[-19:], {"state": state.value, "at": at, "problem": problem}]


class Pbx(Protocol):
    @property
    def running(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self, timeout: float = 20.0) -> None: ...


class AsteriskKeeper:
    """Polls the Asterisk we own; a dead one is restarted with back-off, for as long as it takes."""

    def __init__(
        self,
        asterisk: Pbx,
        *,
        poll_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[PbxHealth], Awaitable[None] | None] = lambda health: None,
    ) -> None:
        self._asterisk = asterisk
        self._poll = poll_seconds
        self._clock = clock
        self._on_change = on_change
        self.health = PbxHealth(since=clock(), up_since=clock())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            if self._asterisk.running:
                continue
            self.health.died(self._clock(), "Asterisk process ended")
            log.error("asterisk_died", pid=self._asterisk.pid, **self.health.view(self._clock()))
            await self._changed()
            await self._restart()

    async def _restart(self) -> None:
        while True:
            await asyncio.sleep(self.health.next_delay())
            self.health.restarting(self._clock())
            await self._changed()
            try:
                await self._asterisk.start()
            except Exception as exc:  # keep trying: residents cannot call until it is back
                self.health.restart_failed(self._clock(), f"restart failed: {exc}")
                log.error("asterisk_restart_failed", error=str(exc),
                          next_try_in=self.health.next_delay())  # fmt: skip
                await self._changed()
                continue
            self.health.restarted(self._clock())
            log.warning("asterisk_restarted", pid=self._asterisk.pid, restarts=self.health.restarts)
            await self._changed()
            return

    async def _changed(self) -> None:
        result = self._on_change(self.health)
        if result is not None:
            await result
