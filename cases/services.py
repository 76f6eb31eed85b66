"""The city's service catalogue: the services residents call about, inside the keypad groups.

Each service belongs to one keypad group and one department of `catalogue.json`, carries
names, descriptions, keywords and typical phrases in every language (the speech IVR matches
transcripts against them), a response deadline, and optionally an answer the IVR can give
itself for plain information requests. `to_open311` renders the GeoReport v2 services list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cases.catalogue import Catalogue, load_catalogue

SERVICES_FILE = Path(__file__).with_name("services.json")
LANGUAGES = ("pl", "en")
MIN_SERVICES = 30


class CatalogueError(ValueError):
    """services.json is inconsistent; the message names every problem found."""


@dataclass(frozen=True)
class Attribute:
    """An Open311 service definition attribute (a question asked when the case is taken)."""

    code: str
    datatype: str
    required: bool
    order: int
    description: dict[str, str]
    values: tuple[tuple[str, dict[str, str]], ...] = ()
    variable: bool = True


@dataclass(frozen=True)
class Service:
    code: str
    group: str
    department: str
    name: dict[str, str]
    description: dict[str, str]
    keywords: dict[str, tuple[str, ...]]
    phrases: dict[str, tuple[str, ...]]
    response_hours: int
    ivr_answer: dict[str, str] | None
    needs_address: bool
    attributes: tuple[Attribute, ...] = ()

    @property
    def is_information(self) -> bool:
        """The IVR can answer it without a case or an agent."""
        return self.ivr_answer is not None


@dataclass(frozen=True)
class ServiceCatalogue:
    services: dict[str, Service]
    keypad: Catalogue

    def __iter__(self) -> Any:
        return iter(self.services.values())

    def __len__(self) -> int:
        return len(self.services)

    def get(self, code: str) -> Service | None:
        return self.services.get(code)

    def in_group(self, group: str) -> list[Service]:
        return [s for s in self.services.values() if s.group == group]


_DATATYPES = {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}


def _texts(raw: dict[str, Any], field: str, where: str, problems: list[str]) -> dict[str, str]:
    value = raw.get(field)
    if not isinstance(value, dict):
        problems.append(f"{where}: {field} must be an object keyed by language")
        return {}
    for lang in LANGUAGES:
        if not isinstance(value.get(lang), str) or not value[lang].strip():
            problems.append(f"{where}: {field}.{lang} is missing or empty")
    return {k: str(v) for k, v in value.items()}


def _lists(
    raw: dict[str, Any], field: str, where: str, problems: list[str]
) -> dict[str, tuple[str, ...]]:
    value = raw.get(field)
    if not isinstance(value, dict):
        problems.append(f"{where}: {field} must be an object keyed by language")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for lang in LANGUAGES:
        items = value.get(lang)
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            problems.append(f"{where}: {field}.{lang} must be a non-empty list of strings")
            continue
        out[lang] = tuple(items)
    return out


def _attribute(raw: dict[str, Any], where: str, problems: list[str]) -> Attribute | None:
    code = raw.get("code")
    if not isinstance(code, str) or not code:
        problems.append(f"{where}: attribute without a code")
        return None
    where = f"{where}.{code}"
    datatype = raw.get("datatype", "string")
    if datatype not in _DATATYPES:
        problems.append(f"{where}: unknown datatype {datatype!r}")
    values = tuple(
        (str(v["key"]), _texts(v, "name", f"{where}.{v.get('key')}", problems))
        for v in raw.get("values", [])
    )
    if datatype.endswith("valuelist") and not values:
        problems.append(f"{where}: a {datatype} needs values")
    return Attribute(
        code=code,
        datatype=datatype,
        required=bool(raw.get("required", False)),
        order=int(raw.get("order", 1)),
        description=_texts(raw, "description", where, problems),
        values=values,
        variable=bool(raw.get("variable", True)),
    )


def parse_services(raw: dict[str, Any], keypad: Catalogue) -> ServiceCatalogue:
    """Build and check the catalogue; raises CatalogueError listing every problem at once."""
    problems: list[str] = []
    services: dict[str, Service] = {}
    entries = raw.get("services")
    if not isinstance(entries, list):
        raise CatalogueError("services.json: 'services' must be a list")
    for i, entry in enumerate(entries):
        code = entry.get("service_code")
        where = f"service {code or f'#{i}'}"
        if not isinstance(code, str) or not code:
            problems.append(f"{where}: missing service_code")
            continue
        if code in services:
            problems.append(f"{where}: duplicate service_code")
        group, department = entry.get("group"), entry.get("department")
        if group not in keypad.groups:
            problems.append(f"{where}: unknown group {group!r}")
        if department not in keypad.departments:
            problems.append(f"{where}: unknown department {department!r}")
        hours = entry.get("response_hours")
        if not isinstance(hours, int) or hours <= 0:
            problems.append(f"{where}: response_hours must be a positive integer")
        answer = entry.get("ivr_answer")
        attributes = tuple(
            a
            for a in (_attribute(r, where, problems) for r in entry.get("attributes", []))
            if a is not None
        )
        services[code] = Service(
            code=code,
            group=str(group),
            department=str(department),
            name=_texts(entry, "name", where, problems),
            description=_texts(entry, "description", where, problems),
            keywords=_lists(entry, "keywords", where, problems),
            phrases=_lists(entry, "phrases", where, problems),
            response_hours=hours if isinstance(hours, int) else 0,
            ivr_answer=None if answer is None else _texts(entry, "ivr_answer", where, problems),
            needs_address=bool(entry.get("needs_address", False)),
            attributes=attributes,
        )
    if len(services) < MIN_SERVICES:
        problems.append(f"only {len(services)} services; the catalogue needs {MIN_SERVICES}+")
    if problems:
        raise CatalogueError("services.json: " + "; ".join(problems))
    return ServiceCatalogue(services, keypad)


def load_services(path: Path = SERVICES_FILE, keypad: Catalogue | None = None) -> ServiceCatalogue:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return parse_services(raw, keypad if keypad is not None else load_catalogue())


def to_open311(service: Service, language: str) -> dict[str, Any]:
    """One entry of the GeoReport v2 `GET services` list."""
    return {
        "service_code": service.code,
        "service_name": service.name[language],
        "description": service.description[language],
        "metadata": bool(service.attributes),
        # realtime: a tracked case; blackbox: an information request answered, with no status.
        "type": "blackbox" if service.is_information else "realtime",
        "keywords": ",".join(service.keywords[language]),
        "group": service.group,
    }


def to_open311_definition(service: Service, language: str) -> dict[str, Any]:
    """The GeoReport v2 `GET services/{code}` service definition."""
    attributes = []
    for a in sorted(service.attributes, key=lambda a: a.order):
        item: dict[str, Any] = {
            "variable": a.variable,
            "code": a.code,
            "datatype": a.datatype,
            "required": a.required,
            "datatype_description": None,
            "order": a.order,
            "description": a.description[language],
        }
        if a.values:
            item["values"] = [{"key": k, "name": names[language]} for k, names in a.values]
        attributes.append(item)
    return {"service_code": service.code, "attributes": attributes}


def check_attributes(service: Service, given: Mapping[str, Any]) -> dict[str, Any]:
    """The service's own fields of a case, checked against its definition; problems raise.

    Unknown fields, missing required ones and values outside a list are refused with a
    message naming the field, so the agent's form can show it next to the field.
    """
    if not isinstance(given, Mapping):
        raise CatalogueError("attributes: an object of field code -> value is required")
    known = {a.code: a for a in service.attributes}
    problems = [f"{code}: not a field of {service.code}" for code in given if code not in known]
    clean: dict[str, Any] = {}
    for attribute in service.attributes:
        value = given.get(attribute.code)
        if value in (None, "", []):
            if attribute.required:
                problems.append(f"{attribute.code}: required")
            continue
        allowed = {key for key, _ in attribute.values}
        if attribute.datatype == "singlevaluelist":
            if not isinstance(value, str) or value not in allowed:
                problems.append(f"{attribute.code}: one of {sorted(allowed)}")
                continue
        elif attribute.datatype == "multivaluelist":
            if not isinstance(value, list) or not set(value) <= allowed:
                problems.append(f"{attribute.code}: a list of {sorted(allowed)}")
                continue
        elif attribute.datatype == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{attribute.code}: a number")
                continue
        elif not isinstance(value, str) or len(value) > 500:
            problems.append(f"{attribute.code}: text of at most 500 characters")
            continue
        clean[attribute.code] = value
    if problems:
        raise CatalogueError("; ".join(problems))
    return clean
