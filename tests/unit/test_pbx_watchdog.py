"""The PBX keeper: a dead Asterisk is restarted with back-off, its state always told."""

from __future__ import annotations

import asyncio

import pytest

from pbx.watchdog import RESTART_BACKOFF, STABLE_SECONDS, AsteriskKeeper, PbxHealth, PbxState


def test_health_walks_down_restarting_up_and_counts_restarts() -> None:
    health = PbxHealth(since=0.0, up_since=0.0)
    health.died(100.0, "Asterisk process ended")
    assert health.state is PbxState.DOWN and not health.ok
    health.restarting(100.5)
    health.restarted(101.0)
    assert health.ok and health.restarts == 1
    view = health.view(103.0)
    assert view == {"state": "up", "ok": True, "for_seconds": 2.0, "restarts": 1,
                    "last_problem": "Asterisk process ended"}  # fmt: skip


def test_back_off_grows_with_failed_attempts_and_caps() -> None:
    health = PbxHealth()
    delays = []
    for _ in range(len(RESTART_BACKOFF) + 2):
        delays.append(health.next_delay())
        health.restart_failed(0.0, "no")
    assert delays == [*RESTART_BACKOFF, RESTART_BACKOFF[-1], RESTART_BACKOFF[-1]]


def test_a_death_after_a_stable_run_starts_the_back_off_again() -> None:
    health = PbxHealth()
    for _ in range(3):
        health.restart_failed(0.0, "no")
    health.restarted(10.0)
    health.died(10.0 + STABLE_SECONDS / 2, "crash loop")
    assert health.next_delay() == RESTART_BACKOFF[3]
    health.restarted(100.0)
    health.died(100.0 + STABLE_SECONDS, "later crash")
    assert health.next_delay() == RESTART_BACKOFF[0]


class FakeAsterisk:
    def __init__(self, failures: int = 0) -> None:
        self.running = True
        self.pid: int | None = 1
        self.starts = 0
        self._failures = failures

    async def start(self, timeout: float = 20.0) -> None:
        self.starts += 1
        if self.starts <= self._failures:
            raise RuntimeError("port in use")
        self.running = True
        self.pid = 100 + self.starts


@pytest.mark.asyncio
async def test_keeper_restarts_a_dead_asterisk_and_retries_a_failed_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pbx.watchdog.RESTART_BACKOFF", (0.0, 0.01))
    asterisk = FakeAsterisk(failures=2)
    seen: list[str] = []
    keeper = AsteriskKeeper(
        asterisk, poll_seconds=0.01, on_change=lambda h: seen.append(h.state.value)
    )
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(0.05)
        assert asterisk.starts == 0  # alive: left alone
        asterisk.running = False
        for _ in range(200):
            await asyncio.sleep(0.01)
            if keeper.health.restarts:
                break
        assert asterisk.starts == 3 and asterisk.running and keeper.health.ok
        assert seen == ["down", "restarting", "down", "restarting", "down", "restarting", "up"]
    finally:
        task.cancel()
