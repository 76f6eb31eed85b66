"""The service catalogue: what services.json must hold and how it is published (Open311)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cases.catalogue import load_catalogue
from cases.services import (
    MIN_SERVICES,
    SERVICES_FILE,
    CatalogueError,
    load_services,
    parse_services,
    to_open311,
    to_open311_definition,
)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SERVICES_FILE.read_text(encoding="utf-8"))
    return data


def test_the_shipped_catalogue_loads_and_fits_the_keypad_groups() -> None:
    services = load_services()
    keypad = load_catalogue()
    assert len(services) >= MIN_SERVICES
    for service in services:
        assert service.group in keypad.groups
        assert service.department in keypad.departments
        for lang in ("pl", "en"):
            assert service.name[lang] and service.description[lang]
            assert service.keywords[lang] and service.phrases[lang]
    # every keypad group has speech services inside it
    assert {s.group for s in services} == set(keypad.groups)


def test_groups_are_the_right_ones_for_typical_services() -> None:
    services = load_services()
    expected = {
        "street_light_out": ("roads", "roads"),
        "pothole": ("roads", "roads"),
        "missed_collection": ("waste", "sanitation"),
        "illegal_dumping": ("waste", "sanitation"),
        "noise_neighbours": ("noise", "city_guard"),
        "illegal_parking": ("noise", "city_guard"),
        "office_hours": ("other", "contact_centre"),
    }
    for code, (group, department) in expected.items():
        service = services.get(code)
        assert service is not None
        assert (service.group, service.department) == (group, department)


def test_information_services_carry_an_answer_in_both_languages() -> None:
    services = load_services()
    info = [s for s in services if s.is_information]
    assert {"office_hours", "office_appointment", "transport_ticket_info"} <= {s.code for s in info}
    for service in info:
        assert service.ivr_answer is not None
        assert service.ivr_answer["pl"] and service.ivr_answer["en"]
    assert services.get("pothole") is not None
    assert services.get("pothole").ivr_answer is None  # type: ignore[union-attr]


def test_open311_services_list_shape() -> None:
    services = load_services()
    pothole = services.get("pothole")
    assert pothole is not None
    entry = to_open311(pothole, "en")
    assert entry == {
        "service_code": "pothole",
        "service_name": "Pothole",
        "description": pothole.description["en"],
        "metadata": True,
        "type": "realtime",
        "keywords": ",".join(pothole.keywords["en"]),
        "group": "roads",
    }
    hours = services.get("office_hours")
    assert hours is not None
    assert to_open311(hours, "pl")["type"] == "blackbox"
    assert to_open311(hours, "pl")["metadata"] is False


def test_open311_service_definition() -> None:
    pothole = load_services().get("pothole")
    assert pothole is not None
    definition = to_open311_definition(pothole, "pl")
    assert definition["service_code"] == "pothole"
    (size,) = definition["attributes"]
    assert size["code"] == "size" and size["datatype"] == "singlevaluelist"
    assert [v["key"] for v in size["values"]] == ["small", "medium", "large"]
    assert size["description"] == "Jak duża jest dziura?"


def _broken(raw: dict[str, Any], change: Any) -> str:
    data = copy.deepcopy(raw)
    change(data)
    with pytest.raises(CatalogueError) as info:
        parse_services(data, load_catalogue())
    return str(info.value)


def test_duplicate_codes_are_refused(raw: dict[str, Any]) -> None:
    def dup(d: dict[str, Any]) -> None:
        d["services"].append(copy.deepcopy(d["services"][0]))

    assert "duplicate service_code" in _broken(raw, dup)


def test_unknown_group_and_department_are_refused(raw: dict[str, Any]) -> None:
    def bad(d: dict[str, Any]) -> None:
        d["services"][0]["group"] = "parks"
        d["services"][1]["department"] = "zoo"

    message = _broken(raw, bad)
    assert "unknown group 'parks'" in message
    assert "unknown department 'zoo'" in message


def test_a_missing_language_is_refused(raw: dict[str, Any]) -> None:
    def no_en(d: dict[str, Any]) -> None:
        del d["services"][0]["name"]["en"]
        d["services"][1]["phrases"]["pl"] = []

    message = _broken(raw, no_en)
    assert "name.en is missing" in message
    assert "phrases.pl must be a non-empty list" in message


def test_too_few_services_are_refused(raw: dict[str, Any]) -> None:
    def shrink(d: dict[str, Any]) -> None:
        d["services"] = d["services"][:5]

    assert f"the catalogue needs {MIN_SERVICES}+" in _broken(raw, shrink)


def test_bad_attributes_and_deadlines_are_refused(raw: dict[str, Any]) -> None:
    def bad(d: dict[str, Any]) -> None:
        d["services"][0]["response_hours"] = 0
        d["services"][1]["attributes"] = [
            {"code": "x", "datatype": "singlevaluelist", "description": {"pl": "x", "en": "x"}}
        ]

    message = _broken(raw, bad)
    assert "response_hours must be a positive integer" in message
    assert "needs values" in message


def test_load_services_reads_a_given_file(tmp_path: Any, raw: dict[str, Any]) -> None:
    path = tmp_path / "services.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert len(load_services(path)) == len(raw["services"])
