from __future__ import annotations

import pytest

from agent_client.accounts import hash_password, verify_password
from cases.catalogue import CATALOGUE_FILE, load_catalogue
from cityline.cli import parse_skills


def test_password_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct hors", first)


@pytest.mark.parametrize("stored", ["", "plain", "md5$x$y$z$a$b", "scrypt$x$8$1$AAAA$BBBB"])
def test_malformed_stored_hashes_never_verify(stored: str) -> None:
    assert not verify_password("anything", stored)


def test_skills_from_the_command_line() -> None:
    assert parse_skills("lang:pl=5, group:roads=3,lang:en") == {
        "lang:pl": 5,
        "group:roads": 3,
        "lang:en": 3,
    }
    with pytest.raises(SystemExit):
        parse_skills("lang:pl=high")


def test_catalogue_keys_are_unique_and_departments_known() -> None:
    catalogue = load_catalogue()
    keys = [g.key for g in catalogue.groups.values()]
    assert len(keys) == len(set(keys))
    assert catalogue.group_for_key("1") is not None and catalogue.group_for_key("9") is None
    assert catalogue.language_for_key("2").code == "en"  # type: ignore[union-attr]


def test_catalogue_with_an_unknown_department_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = CATALOGUE_FILE.read_text().replace('"department": "roads"', '"department": "moon"')
    bad = tmp_path / "catalogue.json"
    bad.write_text(text)
    with pytest.raises(ValueError, match="moon"):
        load_catalogue(bad)
