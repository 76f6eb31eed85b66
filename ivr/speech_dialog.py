"""The speech dialog: what the resident said -> a confirmed service, an answer, or an agent.

Pure, like the keypad dialog: the adapter plays each `Listen` (prompts, then recognition in
the mode it names, with keys accepted throughout), feeds back what happened, and acts on the
outcome: `SpeechRoute` (queue the call), `UseKeypad` (run the keypad menu), `Goodbye` (the IVR
answered the question itself). Keys work wherever speech does. Two no-matches or no-inputs
send the resident to the keypad menu, whose first failure then goes to an agent: never a
hang-up for failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from ivr.intents import Decision, MatchResult

DEFAULT_LANGUAGE = "pl"
LANGUAGE_PAUSE_SECONDS = 2.5  # silence after the welcome means Polish
MAX_MISSES = 2  # no-matches and no-inputs before the keypad menu takes over
MAX_REJECTIONS = 2  # "no, that's not it" before the keypad menu takes over
AGENT_KEY = "0"
YES_KEY, NO_KEY = "1", "2"
LANGUAGE_KEYS = {"1": "pl", "2": "en"}

# Recognition vocabularies for the short questions (grammar mode is ~30x cheaper).
YES_NO = {
    "pl": ("tak", "nie", "konsultant"),
    "en": ("yes", "no", "agent", "operator"),
}
LANGUAGE_WORDS = ("polski", "po polsku", "english", "angielski")


class Step(Enum):
    LANGUAGE = "language"
    OPEN = "open"
    CONFIRM = "confirm"
    CLARIFY = "clarify"
    OFFER_AGENT = "offer_agent"
    DONE = "done"


class Mode(Enum):
    FREE = "free"  # the full model: the open question
    GRAMMAR = "grammar"  # a phrase list: menus and yes/no


# -- what the adapter feeds in ------------------------------------------------------------------
@dataclass(frozen=True)
class Heard:
    text: str


@dataclass(frozen=True)
class Pressed:
    digit: str


@dataclass(frozen=True)
class Silence:
    """Nothing said or pressed before the timeout."""


@dataclass(frozen=True)
class SpeechFailed:
    """The recogniser is gone (worker died, no model): keys from now on."""


Event = Heard | Pressed | Silence | SpeechFailed


# -- what the dialog asks for ---------------------------------------------------------------------
@dataclass(frozen=True)
class Listen:
    step: Step
    prompts: tuple[str, ...]
    language: str
    mode: Mode
    phrases: tuple[str, ...] = ()
    # How long to wait after the prompts: short where silence is an answer (Polish).
    listen_seconds: float = 6.0


@dataclass(frozen=True)
class SpeechRoute:
    """Queue the call. group None: any agent."""

    language: str
    group: str | None
    service_code: str | None
    transcript: str
    address: str | None
    reason: str


@dataclass(frozen=True)
class UseKeypad:
    """Run the keypad menu in this language; `retries` it may still allow before any agent."""

    language: str
    reason: str
    retries: int
    key: str | None = None  # a key the resident already pressed: their menu choice


@dataclass(frozen=True)
class Goodbye:
    """The IVR answered (an information service) and the resident needs nothing more."""

    language: str
    service_code: str
    reason: str


Outcome = Listen | SpeechRoute | UseKeypad | Goodbye
OutcomeT = TypeVar("OutcomeT", SpeechRoute, UseKeypad, Goodbye)


class SpeechDialogError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceInfo:
    """What the dialog needs to know about a service."""

    code: str
    group: str
    is_information: bool


Matcher = Callable[[str, str], MatchResult]  # (language, transcript) -> result
ServiceLookup = Callable[[str], ServiceInfo]


class SpeechDialog:
    def __init__(self, match: Matcher, service: ServiceLookup) -> None:
        self._match = match
        self._service = service
        self.step = Step.LANGUAGE
        self.language = DEFAULT_LANGUAGE
        self.misses = 0
        self.rejections = 0
        self.transcript = ""
        self.address: str | None = None
        self.candidate: str | None = None  # the service being confirmed
        self.choices: tuple[str, ...] = ()  # the services offered to clarify between
        handlers: dict[Step, Callable[[Event], Outcome]] = {
            Step.LANGUAGE: self._on_language,
            Step.OPEN: self._on_open,
            Step.CONFIRM: self._on_confirm,
            Step.CLARIFY: self._on_clarify,
            Step.OFFER_AGENT: self._on_offer_agent,
        }
        self._handlers = handlers

    def start(self) -> Listen:
        # Only English is offered: a Polish caller says nothing (or the problem straight away).
        return Listen(
            Step.LANGUAGE,
            ("welcome_speech",),
            DEFAULT_LANGUAGE,
            Mode.GRAMMAR,
            LANGUAGE_WORDS,
            listen_seconds=LANGUAGE_PAUSE_SECONDS,
        )

    def on_event(self, event: Event) -> Outcome:
        if self.step is Step.DONE:
            raise SpeechDialogError("the dialog has already ended")
        if isinstance(event, SpeechFailed):
            return self._done(UseKeypad(self.language, "speech_unavailable", retries=2))
        return self._handlers[self.step](event)

    # -- steps ------------------------------------------------------------------------------
    def _on_language(self, event: Event) -> Outcome:
        if isinstance(event, Pressed):
            if event.digit in LANGUAGE_KEYS:
                self.language = LANGUAGE_KEYS[event.digit]
                return self._ask_open()
            return self._done(UseKeypad(self.language, "keypad_chosen", retries=2))
        if isinstance(event, Heard):
            result = self._match(DEFAULT_LANGUAGE, event.text)
            if result.special == "language" and result.language:
                self.language = result.language
                return self._ask_open()
            if result.special is None and result.decision is not Decision.NO_MATCH:
                # Straight into the problem, in Polish: no need to ask again.
                return self._on_open(event)
        # Silence or no language word: most residents speak Polish; ask in Polish.
        return self._ask_open()

    def _on_open(self, event: Event) -> Outcome:
        if isinstance(event, Pressed):
            return self._key_in_open(event.digit)
        if isinstance(event, Silence):
            return self._miss(self._ask_open("no_input"))
        assert isinstance(event, Heard)
        self.transcript = event.text
        result = self._match(self.language, event.text)
        if result.address is not None:
            self.address = result.address.text
        if result.special == "agent":
            return self._route(None, None, "asked_for_agent")
        if result.special == "language" and result.language:
            self.language = result.language  # counted as a miss, so switching cannot loop
            return self._miss(self._ask_open())
        code = result.service_code
        if code is not None:
            return self._ask_confirm(code)
        if result.decision is Decision.AMBIGUOUS and len(result.candidates) >= 2:
            self.choices = tuple(c.service_code for c in result.candidates[:2])
            self.step = Step.CLARIFY
            return Listen(
                Step.CLARIFY,
                ("clarify", f"service_{self.choices[0]}", "or", f"service_{self.choices[1]}"),
                self.language,
                Mode.FREE,
            )
        return self._miss(self._ask_open("not_understood"))

    def _on_confirm(self, event: Event) -> Outcome:
        assert self.candidate is not None
        answer = self._yes_no(event)
        if answer == "agent":
            return self._route(None, None, "asked_for_agent")
        if answer == "yes":
            info = self._service(self.candidate)
            if info.is_information:
                self.step = Step.OFFER_AGENT
                return Listen(
                    Step.OFFER_AGENT,
                    (f"info_{info.code}", "offer_agent"),
                    self.language,
                    Mode.GRAMMAR,
                    YES_NO[self.language],
                )
            return self._route(info.group, info.code, "speech")
        if answer == "no":
            self.rejections += 1
            if self.rejections >= MAX_REJECTIONS:
                return self._done(UseKeypad(self.language, "speech_rejected", retries=0))
            return self._ask_open("say_again")
        if isinstance(event, Heard):  # said something else: perhaps the problem, restated
            restated = self._match(self.language, event.text).service_code
            if restated is not None and restated != self.candidate:
                self.transcript = event.text
                return self._miss(self._ask_confirm(restated))
        return self._miss(self._ask_confirm(self.candidate))

    def _on_clarify(self, event: Event) -> Outcome:
        if isinstance(event, Pressed) and event.digit in ("1", "2"):
            return self._ask_confirm(self.choices[int(event.digit) - 1])
        if isinstance(event, Heard):
            result = self._match(self.language, event.text)
            if result.special == "agent":
                return self._route(None, None, "asked_for_agent")
            for candidate in result.candidates:
                if candidate.service_code in self.choices:
                    return self._ask_confirm(candidate.service_code)
        return self._miss(self._ask_open("not_understood"))

    def _on_offer_agent(self, event: Event) -> Outcome:
        assert self.candidate is not None
        info = self._service(self.candidate)
        if self._yes_no(event) in ("yes", "agent"):
            return self._route(info.group, info.code, "information_then_agent")
        return self._done(Goodbye(self.language, info.code, "answered_by_ivr"))

    # -- helpers ----------------------------------------------------------------------------
    def _key_in_open(self, digit: str) -> Outcome:
        if digit == AGENT_KEY:
            return self._route(None, None, "agent_key")
        return self._done(UseKeypad(self.language, "keypad_chosen", retries=2, key=digit))

    def _yes_no(self, event: Event) -> str | None:
        if isinstance(event, Pressed):
            return {YES_KEY: "yes", NO_KEY: "no", AGENT_KEY: "agent"}.get(event.digit)
        if isinstance(event, Heard):
            special = self._match(self.language, event.text).special
            if special in ("yes", "no", "agent"):
                return special
        return None

    def _ask_open(self, preface: str | None = None) -> Listen:
        self.step = Step.OPEN
        prompts = (preface, "open_question") if preface else ("open_question",)
        return Listen(Step.OPEN, prompts, self.language, Mode.FREE)

    def _ask_confirm(self, code: str) -> Listen:
        self.step = Step.CONFIRM
        self.candidate = code
        return Listen(
            Step.CONFIRM, (f"confirm_{code}",), self.language, Mode.GRAMMAR, YES_NO[self.language]
        )

    def _miss(self, retry: Listen) -> Outcome:
        self.misses += 1
        if self.misses >= MAX_MISSES:
            return self._done(UseKeypad(self.language, "speech_not_understood", retries=0))
        return retry

    def _route(self, group: str | None, code: str | None, reason: str) -> SpeechRoute:
        route = SpeechRoute(self.language, group, code, self.transcript, self.address, reason)
        return self._done(route)

    def _done(self, outcome: OutcomeT) -> OutcomeT:
        self.step = Step.DONE
        return outcome
