from __future__ import annotations

import pytest

from cases.catalogue import load_catalogue
from ivr.dialog import Ask, DialogError, KeypadDialog, Route, Step


@pytest.fixture
def dialog() -> KeypadDialog:
    return KeypadDialog(load_catalogue())


def test_language_then_group_routes_the_call(dialog: KeypadDialog) -> None:
    first = dialog.start()
    assert first == Ask(Step.LANGUAGE, ("welcome",), "pl")
    second = dialog.on_input("2")
    assert second == Ask(Step.GROUP, ("group_menu",), "en")
    assert dialog.on_input("1") == Route("en", "roads", "keypad")


def test_invalid_key_replays_the_menu_with_an_explanation(dialog: KeypadDialog) -> None:
    dialog.start()
    assert dialog.on_input("9") == Ask(Step.LANGUAGE, ("invalid", "welcome"), "pl")
    assert dialog.on_input("") == Ask(Step.LANGUAGE, ("no_input", "welcome"), "pl")
    assert dialog.on_input("1") == Ask(Step.GROUP, ("group_menu",), "pl")


def test_two_retries_then_any_agent_never_a_hang_up(dialog: KeypadDialog) -> None:
    dialog.start()
    dialog.on_input("1")
    assert isinstance(dialog.on_input("7"), Ask)
    assert isinstance(dialog.on_input(""), Ask)
    assert dialog.on_input("8") == Route("pl", None, "group_menu_failed")


def test_language_menu_failing_routes_in_the_default_language(dialog: KeypadDialog) -> None:
    dialog.start()
    for _ in range(2):
        assert isinstance(dialog.on_input(""), Ask)
    assert dialog.on_input("") == Route("pl", None, "language_menu_failed")


def test_retries_reset_between_menus(dialog: KeypadDialog) -> None:
    dialog.start()
    dialog.on_input("5")
    dialog.on_input("5")
    dialog.on_input("2")  # English, on the last retry
    dialog.on_input("")
    dialog.on_input("")
    assert dialog.on_input("3") == Route("en", "noise", "keypad")


def test_input_after_routing_is_an_error(dialog: KeypadDialog) -> None:
    dialog.start()
    dialog.on_input("1")
    dialog.on_input("2")
    with pytest.raises(DialogError):
        dialog.on_input("1")


def test_multi_digit_input_is_invalid(dialog: KeypadDialog) -> None:
    dialog.start()
    assert dialog.on_input("12") == Ask(Step.LANGUAGE, ("invalid", "welcome"), "pl")


def test_a_known_language_starts_at_the_group_menu() -> None:
    dialog = KeypadDialog(load_catalogue(), language="en", max_retries=0)
    assert dialog.start() == Ask(Step.GROUP, ("group_menu",), "en")
    assert dialog.on_input("7") == Route("en", None, "group_menu_failed")  # no retries left
