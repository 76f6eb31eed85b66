"""The keypad dialog: language, then service group. Pure: digits in, what to do next out.

The adapter plays each `Ask` and feeds back what the resident pressed ('' for no input),
until the dialog answers with a `Route`. After two retries a menu gives up and sends the
call to any agent: a resident who cannot work the keypad is still served, never hung up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cases.catalogue import Catalogue


class Step(Enum):
    LANGUAGE = "language"
    GROUP = "group"
    DONE = "done"


class Input(Enum):
    VALID = "valid"
    INVALID = "invalid"
    NONE = "none"


@dataclass(frozen=True)
class Ask:
    """Play `prompts` in order (interruptible by a key) and collect one key."""

    step: Step
    prompts: tuple[str, ...]
    language: str
    timeout_ms: int = 5000
    max_digits: int = 1


@dataclass(frozen=True)
class Route:
    """The dialog is over: queue the call for these skills. group None means any agent."""

    language: str
    group: str | None
    reason: str
    # What the speech dialog learnt, for the screen-pop and the draft case.
    service_code: str | None = None
    transcript: str | None = None
    address: str | None = None


class DialogError(RuntimeError):
    """The adapter fed input to a finished dialog."""


# Prompt names; the files are rendered per language from ivr/prompts/<lang>.json.
WELCOME = "welcome"
GROUP_MENU = "group_menu"
INVALID = "invalid"
NO_INPUT = "no_input"


class KeypadDialog:
    def __init__(
        self,
        catalogue: Catalogue,
        *,
        max_retries: int = 2,
        default_language: str = "pl",
        language: str | None = None,
    ) -> None:
        """language: already known (the speech dialog chose it): start at the group menu."""
        self._catalogue = catalogue
        self._max_retries = max_retries
        self.step = Step.GROUP if language else Step.LANGUAGE
        self.language = language or default_language
        self.group: str | None = None
        self.retries = 0
        self.keys: list[str] = []
        # (step, kind of input) -> what happens; every pair is listed, so nothing is implicit.
        self._table: dict[tuple[Step, Input], Callable[[str], Ask | Route]] = {
            (Step.LANGUAGE, Input.VALID): self._language_chosen,
            (Step.LANGUAGE, Input.INVALID): self._retry,
            (Step.LANGUAGE, Input.NONE): self._retry,
            (Step.GROUP, Input.VALID): self._group_chosen,
            (Step.GROUP, Input.INVALID): self._retry,
            (Step.GROUP, Input.NONE): self._retry,
        }

    def start(self) -> Ask:
        return self._ask()

    def on_input(self, digits: str) -> Ask | Route:
        if self.step is Step.DONE:
            raise DialogError("the dialog has already routed the call")
        self.keys.append(digits)
        return self._table[(self.step, self._classify(digits))](digits)

    def _classify(self, digits: str) -> Input:
        if not digits:
            return Input.NONE
        if self.step is Step.LANGUAGE:
            valid = self._catalogue.language_for_key(digits) is not None
        else:
            valid = self._catalogue.group_for_key(digits) is not None
        return Input.VALID if valid else Input.INVALID

    def _language_chosen(self, digits: str) -> Ask:
        language = self._catalogue.language_for_key(digits)
        assert language is not None  # _classify checked it
        self.language = language.code
        self.step = Step.GROUP
        self.retries = 0
        return self._ask()

    def _group_chosen(self, digits: str) -> Route:
        group = self._catalogue.group_for_key(digits)
        assert group is not None
        self.group = group.code
        self.step = Step.DONE
        return Route(self.language, group.code, "keypad")

    def _retry(self, digits: str) -> Ask | Route:
        if self.retries >= self._max_retries:
            failed_menu = self.step.value
            self.step = Step.DONE
            return Route(self.language, None, f"{failed_menu}_menu_failed")
        self.retries += 1
        return self._ask(INVALID if digits else NO_INPUT)

    def _ask(self, preface: str | None = None) -> Ask:
        menu = WELCOME if self.step is Step.LANGUAGE else GROUP_MENU
        prompts = (preface, menu) if preface else (menu,)
        return Ask(self.step, prompts, self.language)
