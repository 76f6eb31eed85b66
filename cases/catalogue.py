"""The city's service groups, departments and languages, loaded from catalogue.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")


@dataclass(frozen=True)
class Department:
    code: str
    names: dict[str, str]
    phone: str = ""  # where agents transfer a caller who must speak to the department itself


@dataclass(frozen=True)
class ServiceGroup:
    code: str
    key: str
    department: str
    response_hours: int
    names: dict[str, str]


@dataclass(frozen=True)
class Language:
    code: str
    key: str
    name: str


@dataclass(frozen=True)
class Catalogue:
    departments: dict[str, Department]
    groups: dict[str, ServiceGroup]
    languages: dict[str, Language]

    def group_for_key(self, key: str) -> ServiceGroup | None:
        return next((g for g in self.groups.values() if g.key == key), None)

    def language_for_key(self, key: str) -> Language | None:
        return next((lang for lang in self.languages.values() if lang.key == key), None)


def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    raw = json.loads(path.read_text(encoding="utf-8"))
    departments = {
        d["code"]: Department(d["code"], d["name"], str(d.get("phone", "")))
        for d in raw["departments"]
    }
    groups = {
        g["code"]: ServiceGroup(
            g["code"], g["key"], g["department"], g["response_hours"], g["name"]
        )
        for g in raw["groups"]
    }
    languages = {
        lang["code"]: Language(lang["code"], lang["key"], lang["name"]) for lang in raw["languages"]
    }
    unknown = {g.department for g in groups.values()} - departments.keys()
    if unknown:
        raise ValueError(f"catalogue: groups name unknown departments {sorted(unknown)}")
    return Catalogue(departments, groups, languages)
