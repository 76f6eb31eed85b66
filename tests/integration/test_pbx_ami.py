"""The AMI link against a real Asterisk: login, actions, ordered events, reconnects, hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pbx.ami import AmiError, AmiLink, AmiMessage, AmiNotConnected
from pbx.asterisk import AsteriskInstance
from tests.support.asterisk import ami_link, running_asterisk

pytestmark = pytest.mark.integration


@pytest.fixture
async def asterisk() -> AsyncIterator[AsteriskInstance]:
    async with running_asterisk("ami") as instance:
        yield instance


@pytest.fixture
async def ami(asterisk: AsteriskInstance) -> AsyncIterator[AmiLink]:
    link = ami_link(asterisk, ping_interval=0.5, ping_timeout=0.5, login_timeout=2.0)
    await link.start()
    yield link
    await link.stop()


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_logs_in_and_runs_actions(ami: AmiLink) -> None:
    assert ami.connected
    status = await ami.action({"Action": "CoreStatus"})
    assert status["Response"] == "Success"
    assert "CoreCurrentCalls" in status
    assert (await ami.action({"Action": "Ping"}))["ping"] == "Pong"  # keys are case-insensitive
    # (not "core show version": Asterisk registers those CLI commands just after FullyBooted)
    assert "anonymous" in await ami.command("pjsip show endpoints")
    queues = await ami.action_list({"Action": "QueueStatus"})
    assert any(m["Event"] == "QueueParams" and m["Queue"] == "cityline-fallback" for m in queues)


async def test_errors_raise(ami: AmiLink) -> None:
    with pytest.raises(AmiError, match="NoSuchAction"):
        await ami.action({"Action": "NoSuchAction"})
    with pytest.raises(AmiError, match="No such command"):
        await ami.command("no such command")
    assert ami.connected  # an error answer is not a broken link


async def test_wrong_secret_fails_fast(asterisk: AsteriskInstance) -> None:
    s = asterisk.settings
    link = AmiLink("127.0.0.1", s.ami_port, s.ami_username, "not-the-secret", login_timeout=4.0)
    started = time.monotonic()
    with pytest.raises(AmiError, match="Authentication failed"):
        await link.start()
    assert time.monotonic() - started < 4.0
    assert not link.connected


async def test_nothing_listening_fails_within_login_timeout() -> None:
    from tests.support.asterisk import free_port

    link = AmiLink("127.0.0.1", free_port(), "x", "y", login_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(AmiError, match="did not log in"):
        await link.start()
    assert time.monotonic() - started < 2.0


async def test_events_arrive_in_order_and_survive_bad_listeners(ami: AmiLink) -> None:
    seen: list[int] = []

    def record(event: AmiMessage) -> None:
        if event.get("UserEvent") == "OrderTest":
            seen.append(int(event["Seq"]))

    def explode(event: AmiMessage) -> None:
        if event.get("UserEvent") == "OrderTest" and int(event["Seq"]) % 7 == 0:
            raise RuntimeError("a listener bug must not break the stream")

    ami.add_listener(explode)
    ami.add_listener(record)
    count = 300
    # Sent concurrently: each action is written before its task first yields, in creation order.
    await asyncio.gather(
        *(
            ami.action({"Action": "UserEvent", "UserEvent": "OrderTest", "Seq": str(i)})
            for i in range(count)
        )
    )
    await wait_until(lambda: len(seen) == count, 5, "all user events")
    assert seen == list(range(count))
    assert ami.connected


async def freeze(pid: int) -> None:
    """SIGSTOP Asterisk and wait until every thread is stopped (the stop is not synchronous)."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped() -> bool:
        tasks = Path(f"/proc/{pid}/task")
        return all("T (stopped)" in (t / "status").read_text() for t in tasks.iterdir())

    await wait_until(all_stopped, 2, "Asterisk to stop")


async def _session_fds(ami: AmiLink) -> list[str]:
    out = await ami.command("manager show connected")
    return re.findall(r"^\s*\S+\s+127\.0\.0\.1\s+\d+\s+\d+\s+(\d+)", out, re.MULTILINE)


async def test_reconnects_after_asterisk_drops_the_connection(ami: AmiLink) -> None:
    reconnects: list[float] = []

    async def reconcile() -> None:
        # A reconnect listener can use the link straight away.
        await ami.action({"Action": "CoreStatus"})
        reconnects.append(time.monotonic())

    ami.add_reconnect_listener(reconcile)
    fds = await _session_fds(ami)
    assert len(fds) == 1
    with contextlib.suppress(AmiError):  # kicking our own session may cut its answer off
        await ami.command(f"manager kick session {fds[0]}")
    await wait_until(lambda: not ami.connected, 3, "the link to notice the kick")
    with pytest.raises(AmiNotConnected):
        await ami.action({"Action": "Ping"})
    await wait_until(lambda: bool(reconnects), 10, "the reconnect listener")
    assert ami.connected
    assert (await ami.action({"Action": "Ping"}))["Ping"] == "Pong"


async def test_reconnects_after_asterisk_restart(asterisk: AsteriskInstance, ami: AmiLink) -> None:
    fired = asyncio.Event()
    ami.add_reconnect_listener(fired.set)
    await asterisk.stop()
    await wait_until(lambda: not ami.connected, 3, "the link to notice Asterisk stopping")
    await asterisk.start()
    await asyncio.wait_for(fired.wait(), 10)
    assert ami.connected
    assert (await ami.action({"Action": "CoreStatus"}))["Response"] == "Success"


async def test_watchdog_detects_a_hung_asterisk(asterisk: AsteriskInstance, ami: AmiLink) -> None:
    fired = asyncio.Event()
    ami.add_reconnect_listener(fired.set)
    assert asterisk.pid is not None
    await freeze(asterisk.pid)  # the TCP connection stays up, nothing answers
    try:
        # ping_interval 0.5 + ping_timeout 0.5: noticed within about a second
        await wait_until(lambda: not ami.connected, 3, "the watchdog to notice the hang")
        with pytest.raises(AmiNotConnected):
            await ami.action({"Action": "Ping"})
        await asyncio.sleep(2)
    finally:
        os.kill(asterisk.pid, signal.SIGCONT)
    await asyncio.wait_for(fired.wait(), 10)
    assert (await ami.action({"Action": "Ping"}))["Ping"] == "Pong"


async def test_pending_action_fails_when_the_link_drops(
    asterisk: AsteriskInstance, ami: AmiLink
) -> None:
    assert asterisk.pid is not None
    await freeze(asterisk.pid)
    try:
        started = time.monotonic()
        # Longer timeout than the watchdog needs: the abort must fail it early, not the timeout.
        with pytest.raises(AmiNotConnected):
            await ami.action({"Action": "CoreStatus"}, timeout=10)
        assert time.monotonic() - started < 5
    finally:
        os.kill(asterisk.pid, signal.SIGCONT)
