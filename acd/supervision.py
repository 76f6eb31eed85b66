"""Supervisor actions on agents: force ready or a pause, listen to or whisper into a live call.

Listening rings the supervisor's own phone (AMI Originate) with ChanSpy on the agent's call leg.
The leg is found in CoreShowChannels and its full name is given to ChanSpy as the prefix, so
the spy can never land on another agent whose endpoint name merely starts the same way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from acd.agents import StateChangeError, parse_state_change
from acd.devices import WEB_PHONE_SUFFIX, web_phone
from acd.engine import AcdError
from acd.live import AcdService
from pbx.ami import AmiError, AmiLink, AmiNotConnected

log = structlog.get_logger(__name__)

MODES = ("listen", "whisper")
# DEVICE_STATE() answers that mean nothing is registered there to ring.
NOT_REGISTERED = frozenset({"UNAVAILABLE", "INVALID", "UNKNOWN", ""})
CHANNEL_UP = "6"  # AMI ChannelState of an answered channel


class SupervisionError(Exception):
    """An action that cannot be done as asked; `kind` says why (the HTTP layer maps it)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # unknown_agent, bad_request, conflict, pbx_down


# -- pure parts ------------------------------------------------------------------------------


def agent_channel_pattern(endpoint: str) -> re.Pattern[str]:
    """Channels of this endpoint's desk phone or browser phone: PJSIP/<endpoint>(-web)?-<hex>."""
    return re.compile(rf"^PJSIP/{re.escape(endpoint)}(?:{WEB_PHONE_SUFFIX})?-[0-9a-f]+$")


def pick_agent_channel(endpoint: str, channels: Iterable[Mapping[str, str]]) -> str | None:
    """The agent's live call leg from CoreShowChannels entries; None when it has no call.

    Only answered legs count (spying on a ringing phone hears nothing); a leg in a bridge (the
    caller is connected) wins over one that is not.
    """
    pattern = agent_channel_pattern(endpoint)
    answered = [
        c
        for c in channels
        if pattern.match(c.get("Channel", "")) and c.get("ChannelState") == CHANNEL_UP
    ]
    if not answered:
        return None
    answered.sort(key=lambda c: (not c.get("BridgeId"), c.get("Channel", "")))
    return answered[0]["Channel"]


def chanspy_data(channel: str, mode: str) -> str:
    """ChanSpy(prefix,options): q quiet (no beep, no name), E leave when the agent's leg hangs
    up, w whisper (the supervisor is heard by the agent only)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    return f"{channel},qE{'w' if mode == 'whisper' else ''}"


def supervisor_phone(endpoint: str, web_state: str, desk_state: str) -> str | None:
    """The supervisor's phone to ring: the browser phone if registered, else the desk phone."""
    if web_state.upper() not in NOT_REGISTERED:
        return web_phone(endpoint)
    if desk_state.upper() not in NOT_REGISTERED:
        return endpoint
    return None


def state_request(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """A supervisor's {"state", "reason"}: the desk's rules, except that a pause needs a reason."""
    try:
        return parse_state_change(body)
    except StateChangeError as exc:
        raise SupervisionError("bad_request", str(exc)) from None


def listen_mode(body: Mapping[str, Any]) -> str:
    mode = body.get("mode", "listen")
    if mode not in MODES:
        raise SupervisionError("bad_request", f"mode must be one of {list(MODES)}")
    return str(mode)


# -- the adapter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenStarted:
    agent: str
    mode: str
    channel: str  # the agent's leg being spied on
    phone: str  # the supervisor's endpoint being rung
    action_id: str  # the Originate's ActionID: its OriginateResponse event carries it


class Supervision:
    def __init__(
        self,
        acd: AcdService,
        ami: AmiLink | None,
        endpoint_of: Callable[[str], str | None],
        *,
        ring_timeout: float = 30.0,
    ) -> None:
        self._acd = acd
        self._ami = ami
        self._endpoint_of = endpoint_of
        self._ring_timeout = ring_timeout

    def _known_agent(self, agent: str) -> None:
        try:
            self._acd.engine.agent_state(agent)
        except AcdError:
            raise SupervisionError("unknown_agent", f"no agent named {agent!r}") from None

    def set_state(self, by: str, agent: str, state: str, reason: str | None) -> dict[str, Any]:
        """Force ready or a pause; the ACD routes by it at once and the desktop hears of it."""
        self._known_agent(agent)
        try:
            if state == "ready":
                self._acd.set_ready(agent)
            else:
                assert reason is not None
                self._acd.pause(agent, reason)
        except AcdError as exc:
            raise SupervisionError("conflict", str(exc)) from exc
        log.info("supervisor_set_state", by=by, agent=agent, state=state, reason=reason)
        return self._acd.agent_view(agent)

    async def listen(
        self, by: str, agent: str, mode: str, *, by_admin: bool = False
    ) -> ListenStarted:
        """Ring the supervisor's phone into ChanSpy on the agent's current call."""
        self._known_agent(agent)
        if by == agent:
            raise SupervisionError("bad_request", "you cannot listen to your own calls")
        agent_endpoint = self._endpoint_of(agent)
        if agent_endpoint is None:
            raise SupervisionError("unknown_agent", f"agent {agent!r} has no phone")
        own_endpoint = None if by_admin else self._endpoint_of(by)
        if own_endpoint is None:
            raise SupervisionError(
                "conflict", f"{by!r} has no phone to listen on; log in with a supervisor account"
            )
        ami = self._ami
        if ami is None or not ami.connected:
            raise SupervisionError("pbx_down", "the link to the phone system is down; try again")
        try:
            channels = await ami.action_list({"Action": "CoreShowChannels"})
            channel = pick_agent_channel(agent_endpoint, channels)
            if channel is None:
                raise SupervisionError("conflict", f"agent {agent!r} is not on a call")
            phone = supervisor_phone(
                own_endpoint,
                await self._device_state(ami, web_phone(own_endpoint)),
                await self._device_state(ami, own_endpoint),
            )
            if phone is None:
                raise SupervisionError(
                    "conflict", "your phone is not registered: start the browser or desk phone"
                )
            action_id = f"cityline-spy-{uuid.uuid4().hex}"
            await ami.originate(
                f"PJSIP/{phone}",
                application="ChanSpy",
                data=chanspy_data(channel, mode),
                # No ": " in the name: some simple SIP phones split headers on it.
                caller_id=f'"{mode.title()} {agent}" <19115>',
                ring_timeout=self._ring_timeout,
                action_id=action_id,
            )
        except AmiNotConnected as exc:
            raise SupervisionError("pbx_down", f"the phone system did not answer: {exc}") from exc
        except AmiError as exc:
            log.warning("supervisor_listen_failed", by=by, agent=agent, error=str(exc))
            raise SupervisionError("pbx_down", f"the phone system refused: {exc}") from exc
        started = ListenStarted(agent, mode, channel, phone, action_id)
        log.info(
            "supervisor_listen", by=by, agent=agent, mode=mode, channel=channel, phone=phone,
            action_id=action_id,
        )  # fmt: skip
        return started

    async def _device_state(self, ami: AmiLink, endpoint: str) -> str:
        variable = f"DEVICE_STATE(PJSIP/{endpoint})"
        reply = await ami.action({"Action": "Getvar", "Variable": variable})
        return reply.get("Value", "")
