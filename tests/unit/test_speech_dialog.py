"""The speech dialog with the real catalogue and matcher: every path ends served, never hung up."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cases.services import load_services
from ivr.intents import IntentMatcher
from ivr.speech_dialog import (
    Goodbye,
    Heard,
    Listen,
    Mode,
    Pressed,
    ServiceInfo,
    Silence,
    SpeechDialog,
    SpeechFailed,
    SpeechRoute,
    Step,
    UseKeypad,
)

CATALOGUE = load_services()
MATCHERS = {lang: IntentMatcher(CATALOGUE, lang) for lang in ("pl", "en")}


def new_dialog() -> SpeechDialog:
    def info(code: str) -> ServiceInfo:
        service = CATALOGUE.services[code]
        return ServiceInfo(code, service.group, service.is_information)

    return SpeechDialog(lambda lang, text: MATCHERS[lang].match(text), info)


def test_a_polish_report_is_confirmed_and_queued_with_its_address() -> None:
    d = new_dialog()
    assert d.start().mode is Mode.GRAMMAR
    ask = d.on_event(Pressed("1"))
    assert isinstance(ask, Listen) and ask.step is Step.OPEN and ask.mode is Mode.FREE
    confirm = d.on_event(Heard("latarnia nie świeci na ulicy Polnej 5"))
    assert isinstance(confirm, Listen) and confirm.prompts == ("confirm_street_light_out",)
    route = d.on_event(Heard("tak"))
    assert route == SpeechRoute(
        "pl", "roads", "street_light_out", "latarnia nie świeci na ulicy Polnej 5",
        "ulicy Polnej 5", "speech",
    )  # fmt: skip


def test_english_chosen_by_voice_then_confirmed_with_a_key() -> None:
    d = new_dialog()
    d.start()
    assert isinstance(d.on_event(Heard("English please")), Listen) and d.language == "en"
    d.on_event(Heard("the street light outside number 5 on Main Street is out"))
    route = d.on_event(Pressed("1"))
    assert isinstance(route, SpeechRoute) and route.service_code == "street_light_out"
    assert route.language == "en"


def test_speaking_straight_away_skips_the_language_question() -> None:
    d = new_dialog()
    d.start()
    confirm = d.on_event(Heard("nikt nie odebrał naszych śmieci"))
    assert isinstance(confirm, Listen) and confirm.prompts == ("confirm_missed_collection",)


@pytest.mark.parametrize(
    "words", ["poproszę konsultanta", "operator", "chcę rozmawiać z konsultantem"]
)
def test_asking_for_an_agent_goes_straight_to_the_queue(words: str) -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    route = d.on_event(Heard(words))
    assert isinstance(route, SpeechRoute) and route.group is None
    assert route.reason == "asked_for_agent"


def test_an_ambiguous_word_gets_a_short_clarifying_question() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    clarify = d.on_event(Heard("hałas"))
    assert isinstance(clarify, Listen) and clarify.step is Step.CLARIFY
    assert clarify.prompts[0] == "clarify" and len(d.choices) == 2
    confirm = d.on_event(Pressed("2"))
    assert isinstance(confirm, Listen) and confirm.prompts == (f"confirm_{d.choices[1]}",)


def test_no_then_one_more_try_then_the_keypad() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    d.on_event(Heard("latarnia nie świeci"))
    again = d.on_event(Heard("nie"))
    assert isinstance(again, Listen) and again.prompts == ("say_again", "open_question")
    d.on_event(Heard("latarnia nie świeci"))
    assert d.on_event(Pressed("2")) == UseKeypad("pl", "speech_rejected", retries=0)


def test_two_no_inputs_fall_back_to_the_keypad_whose_first_failure_goes_to_an_agent() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    assert isinstance(d.on_event(Silence()), Listen)
    assert d.on_event(Heard("blablabla")) == UseKeypad("pl", "speech_not_understood", retries=0)


def test_an_information_question_is_answered_and_an_agent_offered() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("2"))
    d.on_event(Heard("what time is the city office open"))
    offer = d.on_event(Heard("yes"))
    assert isinstance(offer, Listen) and offer.prompts == ("info_office_hours", "offer_agent")
    assert d.on_event(Heard("no")) == Goodbye("en", "office_hours", "answered_by_ivr")


def test_after_an_answer_the_resident_can_still_talk_to_an_agent() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("2"))
    d.on_event(Heard("what time is the city office open"))
    d.on_event(Pressed("1"))
    route = d.on_event(Pressed("1"))
    assert isinstance(route, SpeechRoute) and route.reason == "information_then_agent"
    assert route.group == CATALOGUE.services["office_hours"].group


def test_keys_work_where_speech_does() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    assert d.on_event(Pressed("3")) == UseKeypad("pl", "keypad_chosen", retries=2, key="3")
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    route = d.on_event(Pressed("0"))
    assert isinstance(route, SpeechRoute) and route.reason == "agent_key"


def test_a_dead_recogniser_hands_over_to_the_keypad() -> None:
    d = new_dialog()
    d.start()
    d.on_event(Pressed("1"))
    assert d.on_event(SpeechFailed()) == UseKeypad("pl", "speech_unavailable", retries=2)


events = st.one_of(
    st.builds(Heard, st.text(max_size=60)),
    st.builds(
        Heard,
        st.sampled_from(
            [
                "tak",
                "nie",
                "yes",
                "no",
                "hałas",
                "latarnia nie świeci",
                "konsultant",
                "english",
                "what time is the office open",
            ]
        ),
    ),
    st.builds(Pressed, st.sampled_from(list("0123456789*#"))),
    st.just(Silence()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=20))
def test_every_path_ends_in_a_route_the_keypad_or_an_answer(script: list) -> None:  # type: ignore[type-arg]
    d = new_dialog()
    d.start()
    outcome = None
    for event in script:
        outcome = d.on_event(event)
        if not isinstance(outcome, Listen):
            break
    # Bounded: the dialog decides within a handful of turns, whatever the resident does.
    assert d.misses <= 2 and d.rejections <= 2
    if len(script) >= 8:
        assert not isinstance(outcome, Listen), script
    if outcome is not None and not isinstance(outcome, Listen):
        assert isinstance(outcome, SpeechRoute | UseKeypad | Goodbye)
