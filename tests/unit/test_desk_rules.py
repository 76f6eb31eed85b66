"""Pure rules behind the agent desk: login throttling, agents' phones, case fields, addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.devices import DeviceTracker, web_phone
from agent_client.limits import LoginThrottle, ThrottleLimits
from cases.services import CatalogueError, check_attributes, load_services
from cases.store import haversine_m, street_words
from pbx.asterisk import ice_loopback_mapping

# -- login throttle ----------------------------------------------------------------------------


def test_five_wrong_passwords_make_the_sixth_attempt_wait() -> None:
    throttle = LoginThrottle(ThrottleLimits(window_seconds=300, per_name=5, per_address=20))
    for second in range(5):
        assert throttle.retry_after("ola", "127.0.0.1", now=second) == 0
        throttle.failed("ola", "127.0.0.1", now=second)
    # the oldest failure (t=0) leaves the window at t=300
    assert throttle.retry_after("ola", "127.0.0.1", now=10) == pytest.approx(290)
    assert throttle.retry_after("ola", "127.0.0.1", now=300.5) == 0


def test_a_success_clears_the_account_but_not_the_address() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_name=2, per_address=3))
    throttle.failed("ola", "10.0.0.9", now=0)
    throttle.failed("ola", "10.0.0.9", now=1)
    throttle.succeeded("ola")
    assert throttle.retry_after("ola", "10.0.0.9", now=2) == 0
    throttle.failed("piotr", "10.0.0.9", now=3)
    assert throttle.retry_after("kasia", "10.0.0.9", now=4) > 0  # spraying from one address


def test_other_accounts_are_not_locked_by_one_guesser() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_name=3, per_address=100))
    for second in range(3):
        throttle.failed("ola", "127.0.0.1", now=second)
    assert throttle.retry_after("ola", "127.0.0.1", now=5) > 0
    assert throttle.retry_after("jan", "127.0.0.1", now=5) == 0


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from("xyz")), max_size=300))
def test_memory_stays_bounded(failures: list[tuple[str, str]]) -> None:
    throttle = LoginThrottle(ThrottleLimits(tracked_keys=6))
    for second, (name, address) in enumerate(failures):
        throttle.failed(name, address, now=second)
    assert len(throttle._failures) <= 6


# -- agents' phones ----------------------------------------------------------------------------


class _Acd:
    def __init__(self) -> None:
        self.reachable: dict[str, bool] = {}

    def agent_view(self, agent: str) -> dict[str, object]:
        return {"reachable": self.reachable.get(agent, False)}

    def set_reachable(self, agent: str, reachable: bool) -> None:
        self.reachable[agent] = reachable


def _event(device: str, state: str) -> dict[str, str]:
    return {"Event": "DeviceStateChange", "Device": f"PJSIP/{device}", "State": state}


def test_an_agent_is_reachable_while_either_phone_is_registered() -> None:
    acd = _Acd()
    agents = {"agent-ola": "ola"}
    tracker = DeviceTracker(acd, agents.get)  # type: ignore[arg-type]
    tracker.on_device_state(_event("agent-ola", "NOT_INUSE"))
    tracker.on_device_state(_event(web_phone("agent-ola"), "NOT_INUSE"))
    assert acd.reachable["ola"] is True
    assert tracker.phones_of("ola") == ["agent-ola-web", "agent-ola"]  # the browser first
    tracker.on_device_state(_event("agent-ola", "UNAVAILABLE"))
    assert acd.reachable["ola"] is True and tracker.phones_of("ola") == ["agent-ola-web"]
    tracker.on_device_state(_event("agent-ola-web", "UNAVAILABLE"))
    assert acd.reachable["ola"] is False and tracker.phones_of("ola") == []


def test_unknown_devices_are_ignored() -> None:
    acd = _Acd()
    tracker = DeviceTracker(acd, {}.get)  # type: ignore[arg-type]
    tracker.on_device_state(_event("stranger-web", "NOT_INUSE"))
    assert acd.reachable == {} and tracker.phones_of("stranger") == []


# -- a case's service fields -------------------------------------------------------------------

SERVICES = load_services()


def _service_with_list() -> str:
    for service in SERVICES:
        if any(a.datatype == "singlevaluelist" and a.required for a in service.attributes):
            return str(service.code)
    raise AssertionError("the catalogue has a service with a required list field")


def test_required_list_fields_are_checked() -> None:
    service = SERVICES.get(_service_with_list())
    assert service is not None
    field = next(a for a in service.attributes if a.required)
    allowed = field.values[0][0]
    assert check_attributes(service, {field.code: allowed})[field.code] == allowed
    with pytest.raises(CatalogueError, match=f"{field.code}: required"):
        check_attributes(service, {})
    with pytest.raises(CatalogueError, match="one of"):
        check_attributes(service, {field.code: "not-a-choice"})
    with pytest.raises(CatalogueError, match="not a field"):
        check_attributes(service, {field.code: allowed, "colour": "red"})


# -- places ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("ul. Marszałkowska 5", ["marszałkow"]),
        ("ulica Marszałkowskiej 12/4", ["marszałkowsk"]),
        ("5 Main Street", ["main"]),
        ("", []),
        ("12", []),
    ],
)
def test_street_words(address: str, words: list[str]) -> None:
    assert street_words(address) == words


def test_polish_cases_of_one_street_match_each_other() -> None:
    stored = "ul. Marszałkowska 5".lower()
    assert all(w in stored for w in street_words("przy Marszałkowskiej"))


def test_haversine_against_a_known_distance() -> None:
    # Warsaw: the Palace of Culture to the Royal Castle, about 1.9 km
    assert haversine_m(52.2318, 21.0060, 52.2480, 21.0152) == pytest.approx(1920, rel=0.05)


# -- browser media stays on loopback -------------------------------------------------------------


def test_every_interface_address_is_advertised_as_loopback() -> None:
    assert ice_loopback_mapping([]) == ""
    assert ice_loopback_mapping(["192.0.2.2", "10.1.1.1"]) == (
        "[ice_host_candidates]\n192.0.2.2 => 127.0.0.1\n10.1.1.1 => 127.0.0.1\n"
    )
