"""Agents' phones as Asterisk sees them: an agent with no registered phone is not offered calls.

An agent may have two phones: a SIP phone on its endpoint and the browser softphone of the
desk page on `<endpoint>-web`. The agent is reachable while either is, and calls ring the
ones that are registered.

Live from AMI DeviceStateChange events; reconciled from PJSIPShowEndpoints at start-up and
after every AMI reconnect (events missed while the link was down are not replayed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from acd.engine import AcdError
from acd.live import AcdService
from pbx.ami import AmiLink

log = structlog.get_logger(__name__)

# Asterisk device states that mean "nothing to ring".
UNREACHABLE_STATES = frozenset({"UNAVAILABLE", "INVALID", "UNKNOWN", "Unavailable", "Invalid"})


# The browser softphone's endpoint is the agent's endpoint with this suffix.
WEB_PHONE_SUFFIX = "-web"


def web_phone(endpoint: str) -> str:
    return endpoint + WEB_PHONE_SUFFIX


class DeviceTracker:
    def __init__(self, acd: AcdService, agent_for_endpoint: Callable[[str], str | None]) -> None:
        self._acd = acd
        self._agent_for_endpoint = agent_for_endpoint
        self._registered: dict[str, set[str]] = {}  # agent -> its endpoints that answer

    def phones_of(self, agent_id: str) -> list[str]:
        """The agent's registered endpoints, the browser first (an agent at the desk page)."""
        phones = self._registered.get(agent_id, ())
        return sorted(phones, key=lambda endpoint: not endpoint.endswith(WEB_PHONE_SUFFIX))

    def subscribe(self, ami: AmiLink) -> None:
        ami.subscribe("DeviceStateChange", self.on_device_state)

    def on_device_state(self, event: Mapping[str, str]) -> None:
        device = event.get("Device", "")
        if device.startswith("PJSIP/"):
            self._set(
                device.removeprefix("PJSIP/"), event.get("State", "") not in UNREACHABLE_STATES
            )

    async def reconcile(self, ami: AmiLink) -> None:
        try:
            endpoints = await ami.action_list({"Action": "PJSIPShowEndpoints"})
        except Exception as exc:  # "No endpoints found" is an error response too
            log.warning("device_reconcile_failed", error=str(exc))
            return
        for endpoint in endpoints:
            name = endpoint.get("ObjectName", "")
            self._set(name, endpoint.get("DeviceState", "") not in UNREACHABLE_STATES)

    def _set(self, endpoint: str, registered: bool) -> None:
        agent = self._agent_for_endpoint(endpoint.removesuffix(WEB_PHONE_SUFFIX))
        if agent is None:
            return
        phones = self._registered.setdefault(agent, set())
        if registered:
            phones.add(endpoint)
        else:
            phones.discard(endpoint)
        reachable = bool(phones)
        try:
            if self._acd.agent_view(agent).get("reachable") != reachable:
                self._acd.set_reachable(agent, reachable)
                log.info("agent_phone", agent=agent, reachable=reachable, phones=sorted(phones))
        except AcdError as exc:
            log.info("agent_phone_unknown_to_acd", agent=agent, error=str(exc))
