"""Agents' phones as Asterisk sees them: an unregistered phone is not offered calls.

Live from AMI DeviceStateChange events; reconciled from PJSIPShowEndpoints at start-up and
after every AMI reconnect (events missed while the link was down are not replayed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from acd.engine import AcdError
from acd.service import AcdService
from pbx.ami import AmiLink

log = structlog.get_logger(__name__)

# Asterisk device states that mean "nothing to ring".
UNREACHABLE_STATES = frozenset({"UNAVAILABLE", "INVALID", "UNKNOWN", "Unavailable", "Invalid"})


class DeviceTracker:
    def __init__(self, acd: AcdService, agent_for_endpoint: Callable[[str], str | None]) -> None:
        self._acd = acd
        self._agent_for_endpoint = agent_for_endpoint

    def on_ami_event(self, event: Mapping[str, str]) -> None:
        if event.get("Event") != "DeviceStateChange":
            return
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

    def _set(self, endpoint: str, reachable: bool) -> None:
        agent = self._agent_for_endpoint(endpoint)
        if agent is None:
            return
        try:
            if self._acd.agent_view(agent).get("reachable") != reachable:
                self._acd.set_reachable(agent, reachable)
                log.info("agent_phone", agent=agent, reachable=reachable)
        except AcdError as exc:
            log.info("agent_phone_unknown_to_acd", agent=agent, error=str(exc))
