"""Supervisor actions: the agent's exact call leg, ChanSpy's options, which phone rings, the
validation of requests, and the ACD seeing a forced state at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from acd.engine import Engine
from acd.live import AcdService
from acd.service_level import ServiceLevelWindows
from acd.supervision import (
    Supervision,
    SupervisionError,
    agent_channel_pattern,
    chanspy_data,
    listen_mode,
    pick_agent_channel,
    state_request,
    supervisor_phone,
)
from pbx.ami import AmiError, AmiMessage


@pytest.mark.parametrize(
    ("channel", "matches"),
    [
        ("PJSIP/agent-ida-0000000a", True),
        ("PJSIP/agent-ida-web-0000000b", True),
        ("PJSIP/agent-ida-00000000ff", True),
        ("PJSIP/agent-ida2-0000000a", False),  # another agent whose name starts the same
        ("PJSIP/agent-ida-web2-0000000a", False),
        ("PJSIP/agent-ida-0000000a;2", False),
        ("PJSIP/agent-ida-", False),
        ("PJSIP/agent-ida-XYZ", False),
        ("Local/agent-ida-0000000a", False),
        ("PJSIP/agent.ida-0000000a", False),  # the dot is not a wildcard
        ("xPJSIP/agent-ida-0000000a", False),
    ],
)
def test_an_agents_channels_are_its_desk_and_browser_phone_legs(
    channel: str, matches: bool
) -> None:
    assert bool(agent_channel_pattern("agent-ida").match(channel)) is matches
    assert not agent_channel_pattern("agent-i.a").match("PJSIP/agent-ida-0000000a")


def channel(name: str, state: str = "6", bridge: str = "") -> dict[str, str]:
    return {"Channel": name, "ChannelState": state, "BridgeId": bridge}


def test_the_leg_to_spy_on_is_the_answered_bridged_one() -> None:
    channels = [
        channel("PJSIP/agent-ida2-00000001", bridge="b1"),  # someone else
        channel("PJSIP/agent-ida-00000002", state="5"),  # ringing
        channel("PJSIP/agent-ida-00000003"),  # answered, not yet bridged
        channel("PJSIP/agent-ida-web-00000004", bridge="b2"),  # talking to the caller
    ]
    assert pick_agent_channel("agent-ida", channels) == "PJSIP/agent-ida-web-00000004"
    assert pick_agent_channel("agent-ida", channels[:3]) == "PJSIP/agent-ida-00000003"
    assert pick_agent_channel("agent-ida", channels[:2]) is None
    assert pick_agent_channel("agent-bob", channels) is None


def test_chanspy_options() -> None:
    assert chanspy_data("PJSIP/agent-ida-00000003", "listen") == "PJSIP/agent-ida-00000003,qE"
    assert chanspy_data("PJSIP/agent-ida-00000003", "whisper") == "PJSIP/agent-ida-00000003,qEw"
    with pytest.raises(ValueError):
        chanspy_data("PJSIP/agent-ida-00000003", "barge")


def test_the_browser_phone_rings_when_registered_else_the_desk_phone() -> None:
    assert supervisor_phone("agent-sara", "NOT_INUSE", "NOT_INUSE") == "agent-sara-web"
    assert supervisor_phone("agent-sara", "INUSE", "UNAVAILABLE") == "agent-sara-web"
    assert supervisor_phone("agent-sara", "UNAVAILABLE", "NOT_INUSE") == "agent-sara"
    assert supervisor_phone("agent-sara", "INVALID", "INUSE") == "agent-sara"  # no -web endpoint
    assert supervisor_phone("agent-sara", "Unavailable", "") is None


def test_state_requests() -> None:
    assert state_request({"state": "ready", "reason": "ignored"}) == ("ready", None)
    assert state_request({"state": "paused", "reason": "  team   meeting "}) == (
        "paused",
        "team meeting",
    )
    for bad in (
        {},
        {"state": "on_call"},
        {"state": ["ready"]},
        {"state": "paused"},
        {"state": "paused", "reason": "   "},
        {"state": "paused", "reason": 5},
        {"state": "paused", "reason": "x" * 41},
    ):
        with pytest.raises(SupervisionError) as refused:
            state_request(bad)
        assert refused.value.kind == "bad_request"


def test_listen_modes() -> None:
    assert listen_mode({}) == "listen"
    assert listen_mode({"mode": "whisper"}) == "whisper"
    for bad in ({"mode": "barge"}, {"mode": None}, {"mode": ["listen"]}):
        with pytest.raises(SupervisionError):
            listen_mode(bad)


def acd_with(*agents: str) -> AcdService:
    acd = AcdService(Engine(stats=ServiceLevelWindows()), clock=lambda: 100.0)
    for name in agents:
        acd.upsert_agent(name, {"lang:pl": 3, "group:roads": 3})
    return acd


def test_a_forced_state_reaches_the_acd_at_once_and_is_logged_with_who() -> None:
    acd = acd_with("ida")
    seen: list[Any] = []
    acd.subscribe(seen.append)
    acd.login("ida")
    supervision = Supervision(acd, None, lambda name: f"agent-{name}")
    with capture_logs() as logs:
        view = supervision.set_state("sara", "ida", "ready", None)
        assert view["state"] == "ready" and acd.engine.agent_state("ida") == "ready"
        supervision.set_state("sara", "ida", "paused", "coaching")
    assert acd.agent_view("ida")["pause_reason"] == "coaching"
    assert any(getattr(e, "view", {}).get("pause_reason") == "coaching" for e in seen)
    actions = [e for e in logs if e["event"] == "supervisor_set_state"]
    assert [(e["by"], e["agent"], e["state"]) for e in actions] == [
        ("sara", "ida", "ready"),
        ("sara", "ida", "paused"),
    ]


def test_forced_states_the_acd_cannot_take_are_conflicts() -> None:
    supervision = Supervision(acd_with("ida"), None, lambda name: f"agent-{name}")
    with pytest.raises(SupervisionError) as refused:
        supervision.set_state("sara", "ida", "ready", None)  # logged out
    assert refused.value.kind == "conflict" and "logged_out" in str(refused.value)
    with pytest.raises(SupervisionError) as unknown:
        supervision.set_state("sara", "nobody", "ready", None)
    assert unknown.value.kind == "unknown_agent"


class FakeAmi:
    """Answers CoreShowChannels, DEVICE_STATE() and Originate like Asterisk would."""

    def __init__(
        self, channels: list[dict[str, str]], devices: Mapping[str, str], *, fail: bool = False
    ) -> None:
        self.connected = True
        self.channels = channels
        self.devices = devices
        self.fail = fail
        self.originated: list[dict[str, Any]] = []

    async def action_list(self, action: Mapping[str, str]) -> list[AmiMessage]:
        assert action["Action"] == "CoreShowChannels"
        return [AmiMessage(c) for c in self.channels]

    async def action(self, action: Mapping[str, str]) -> AmiMessage:
        assert action["Action"] == "Getvar"
        device = action["Variable"].removeprefix("DEVICE_STATE(PJSIP/").removesuffix(")")
        return AmiMessage({"Response": "Success", "Value": self.devices.get(device, "INVALID")})

    async def originate(self, channel: str, **kwargs: Any) -> AmiMessage:
        if self.fail:
            raise AmiError("Originate failed: Extension does not exist.")
        self.originated.append({"channel": channel, **kwargs})
        return AmiMessage({"Response": "Success"})


def supervision_with(ami: FakeAmi) -> Supervision:
    endpoints = {"ida": "agent-ida", "sara": "agent-sara"}
    return Supervision(acd_with("ida"), ami, endpoints.get)  # type: ignore[arg-type]


async def test_listening_rings_the_supervisors_phone_into_chanspy_on_the_exact_leg() -> None:
    ami = FakeAmi(
        [channel("PJSIP/agent-ida2-00000001", bridge="b9"),
         channel("PJSIP/agent-ida-00000007", bridge="b1")],
        {"agent-sara-web": "UNAVAILABLE", "agent-sara": "NOT_INUSE"},
    )  # fmt: skip
    with capture_logs() as logs:
        started = await supervision_with(ami).listen("sara", "ida", "whisper")
    assert started.channel == "PJSIP/agent-ida-00000007" and started.phone == "agent-sara"
    (originate,) = ami.originated
    assert originate["channel"] == "PJSIP/agent-sara"
    assert originate["application"] == "ChanSpy"
    assert originate["data"] == "PJSIP/agent-ida-00000007,qEw"
    assert originate["action_id"] == started.action_id
    assert ": " not in originate["caller_id"]
    (logged,) = [e for e in logs if e["event"] == "supervisor_listen"]
    assert logged["by"] == "sara" and logged["agent"] == "ida" and logged["mode"] == "whisper"


async def test_a_registered_browser_phone_is_preferred() -> None:
    ami = FakeAmi([channel("PJSIP/agent-ida-00000007")], {"agent-sara-web": "NOT_INUSE"})
    started = await supervision_with(ami).listen("sara", "ida", "listen")
    assert started.phone == "agent-sara-web"
    assert ami.originated[0]["data"] == "PJSIP/agent-ida-00000007,qE"


@pytest.mark.parametrize(
    ("channels", "devices", "by", "by_admin", "kind", "words"),
    [
        ([], {"agent-sara": "NOT_INUSE"}, "sara", False, "conflict", "not on a call"),
        ([channel("PJSIP/agent-ida-00000007", state="5")], {"agent-sara": "NOT_INUSE"},
         "sara", False, "conflict", "not on a call"),
        ([channel("PJSIP/agent-ida-00000007")], {}, "sara", False, "conflict", "not registered"),
        ([channel("PJSIP/agent-ida-00000007")], {}, "admin", True, "conflict", "no phone"),
        ([channel("PJSIP/agent-ida-00000007")], {}, "ida", False, "bad_request", "your own"),
    ],
)  # fmt: skip
async def test_listening_refusals(
    channels: list[dict[str, str]],
    devices: dict[str, str],
    by: str,
    by_admin: bool,
    kind: str,
    words: str,
) -> None:
    ami = FakeAmi(channels, devices)
    with pytest.raises(SupervisionError) as refused:
        await supervision_with(ami).listen(by, "ida", "listen", by_admin=by_admin)
    assert refused.value.kind == kind and words in str(refused.value)
    assert ami.originated == []


async def test_the_phone_system_down_or_refusing_is_said_plainly() -> None:
    down = FakeAmi([], {})
    down.connected = False
    with pytest.raises(SupervisionError) as refused:
        await supervision_with(down).listen("sara", "ida", "listen")
    assert refused.value.kind == "pbx_down"
    failing = FakeAmi([channel("PJSIP/agent-ida-00000007")], {"agent-sara": "NOT_INUSE"}, fail=True)
    with pytest.raises(SupervisionError) as refused:
        await supervision_with(failing).listen("sara", "ida", "listen")
    assert refused.value.kind == "pbx_down" and "Extension does not exist" in str(refused.value)
    with pytest.raises(SupervisionError) as unknown:
        await supervision_with(failing).listen("sara", "nobody", "listen")
    assert unknown.value.kind == "unknown_agent"
