"""Asterisk's fallback queue, kept in step with the ACD: it rings only agents who could take a
call now.

Every agent is a static member of the fallback queue (both phones: PJSIP/<endpoint> and its
browser softphone, asterisk-conf/queues_member.conf.part), so the queue still works when this
process is gone. While it runs, each agent's members are paused whenever the ACD has the agent
logged out, paused or in wrap-up (AMI QueuePause), driven by the ACD's AgentChanged events.
If the process dies, app_queue keeps the last state it was given: ready agents keep ringing,
paused ones stay paused. A fresh Asterisk starts with everyone unpaused (the last resort) and
is put in step at our start. One task sends the changes, in order, newest wish wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from acd.devices import WEB_PHONE_SUFFIX
from acd.events import AcdEvent, AgentChanged
from calls.fallback import FALLBACK_QUEUE
from pbx.ami import AmiError, AmiLink

log = structlog.get_logger(__name__)

# The ACD states in which the fallback queue may ring an agent (ringinuse=no keeps it from
# ringing one already on a call).
RINGABLE_STATES = frozenset({"ready", "ringing", "on_call"})


def member_paused(state: str) -> bool:
    """Whether an agent in this ACD state is a paused member of the fallback queue."""
    return state not in RINGABLE_STATES


def member_interfaces(endpoint: str) -> list[str]:
    return [f"PJSIP/{endpoint}", f"PJSIP/{endpoint}{WEB_PHONE_SUFFIX}"]


class FallbackMembers:
    def __init__(
        self,
        ami: AmiLink,
        *,
        endpoint_of: Callable[[str], str | None],
        queue: str = FALLBACK_QUEUE,
        action_timeout: float = 5.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self._ami = ami
        self._endpoint_of = endpoint_of
        self._queue = queue
        self._timeout = action_timeout
        self._retry = retry_seconds
        self.wanted: dict[str, bool] = {}  # agent -> paused
        self.sent: dict[str, bool] = {}  # what app_queue was last told
        self._changed = asyncio.Event()

    def on_acd_event(self, event: AcdEvent) -> None:
        if isinstance(event, AgentChanged) and "state" in event.view:
            self.want(event.agent_id, member_paused(str(event.view["state"])))

    def want(self, agent_id: str, paused: bool) -> None:
        self.wanted[agent_id] = paused
        if self.sent.get(agent_id) != paused:
            self._changed.set()

    def want_all(self, states: Mapping[str, str]) -> None:
        for agent_id, state in states.items():
            self.want(agent_id, member_paused(state))

    def resync(self) -> None:
        """app_queue may have forgotten (a reload, a new Asterisk): tell it everything again."""
        self.sent.clear()
        self._changed.set()

    async def run(self) -> None:
        """Send what changed, one agent at a time, until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            for agent_id, paused in list(self.wanted.items()):
                if self.sent.get(agent_id) == paused:
                    continue
                if await self._tell(agent_id, paused):
                    self.sent[agent_id] = paused
                else:
                    self._changed.set()  # try again shortly
            if self._changed.is_set():
                await asyncio.sleep(self._retry)

    async def _tell(self, agent_id: str, paused: bool) -> bool:
        endpoint = self._endpoint_of(agent_id)
        if endpoint is None:
            return True  # no phone: nothing in the queue to pause
        for interface in member_interfaces(endpoint):
            try:
                await self._ami.action(
                    {
                        "Action": "QueuePause",
                        "Queue": self._queue,
                        "Interface": interface,
                        "Paused": "true" if paused else "false",
                        "Reason": "cityline" if paused else "",
                    },
                    timeout=self._timeout,
                )
            except AmiError as exc:
                if "not found" in str(exc).lower():
                    log.info("fallback_member_missing", agent=agent_id, interface=interface)
                    continue  # not a member (yet): a reload re-syncs it
                log.warning("fallback_member_not_changed", agent=agent_id, interface=interface,
                            paused=paused, error=str(exc))  # fmt: skip
                return False
        log.info("fallback_member", agent=agent_id, paused=paused)
        return True
