"""Pure rules behind the agent desk: agents' phones, case fields, addresses (log-in throttling:
test_login_throttle.py)."""

from __future__ import annotations

import pytest

from acd.devices import DeviceTracker, web_phone
from cases.services import CatalogueError, check_attributes, load_services
from cases.store import haversine_m, street_words
from pbx.asterisk import ice_loopback_mapping

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
