"""The speech intent matcher: stemming, special intents, addresses, decisions, held-out accuracy."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_intents import evaluate, load_heldout
from cases.services import ServiceCatalogue, load_services
from ivr.intents import (
    Decision,
    Example,
    IntentMatcher,
    grammar_phrases,
    load_examples,
)
from ivr.text_folding import fold, stem_en, stem_pl

# Measured by `python -m bench.bench_intents --set SET`: unseen pl 95.6%, en 96.7%; the older
# sets 96.2-100%. The floors sit a little below so a regression fails here. A confident wrong
# answer is still read back to the resident, but stays rare: at most 2 per set.
ACCURACY_FLOOR = {"unseen": 0.93, "heldout": 0.95, "fresh": 0.95, "sealed": 0.94}
MAX_WRONG_CONFIDENT = 2


@pytest.fixture(scope="module")
def catalogue() -> ServiceCatalogue:
    return load_services()


@pytest.fixture(scope="module")
def pl(catalogue: ServiceCatalogue) -> IntentMatcher:
    return IntentMatcher(catalogue, "pl")


@pytest.fixture(scope="module")
def en(catalogue: ServiceCatalogue) -> IntentMatcher:
    return IntentMatcher(catalogue, "en")


# --- normalisation and stemming ---


def test_fold_removes_polish_diacritics() -> None:
    assert fold("Zażółć GĘŚLĄ jaźń") == "zazolc gesle jazn"  # ą folds with ę on purpose
    assert fold("Łódź") == "lodz"


@pytest.mark.parametrize(
    ("forms", "stem"),
    [
        (["ulica", "ulicy", "ulicę", "ulicą"], "ulic"),
        (["latarnia", "latarni", "latarnie", "latarniami"], "latarn"),
        (["śmieci", "śmieciach", "śmieciami"], "smiec"),
        (["kosz", "kosza", "kosze", "koszy"], "kosz"),
        (["gałąź", "gałęzie"], "galez"),
        (["świeci", "świecą", "świeciła"], "swiec"),
    ],
)
def test_polish_inflections_share_a_stem(forms: list[str], stem: str) -> None:
    assert {stem_pl(fold(f)) for f in forms} == {stem}


@pytest.mark.parametrize(
    ("forms", "stem"),
    [
        (["bin", "bins"], "bin"),
        (["dump", "dumped", "dumping"], "dump"),
        (["collect", "collected", "collection"], "collect"),
        (["light", "lights"], "light"),
        (["neighbour", "neighbours", "neighbors"], "neighbor"),
    ],
)
def test_english_inflections_share_a_stem(forms: list[str], stem: str) -> None:
    assert {stem_en(f) for f in forms} == {stem}


# --- services ---


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nie świeci latarnia", "street_light_out"),
        ("latarnie nie świecą od tygodnia", "street_light_out"),
        ("śmieciarka nie przyjechała", "missed_collection"),
        ("przepełnione kosze w parku", "overflowing_bin"),
        ("sąsiad puszcza głośną muzykę", "noise_neighbours"),
    ],
)
def test_polish_services(pl: IntentMatcher, text: str, code: str) -> None:
    result = pl.match(text)
    assert result.candidates[0].service_code == code
    assert result.decision in (Decision.CONFIDENT, Decision.CONFIRM)
    assert result.service_code == code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("the street light is out", "street_light_out"),
        ("there is a pot hole in the road", "pothole"),  # two words, one keyword
        ("the streetlights are off", "street_light_out"),
        ("my bins were not collected", "missed_collection"),
    ],
)
def test_english_services(en: IntentMatcher, text: str, code: str) -> None:
    assert en.match(text).candidates[0].service_code == code


def test_recognition_errors_are_tolerated(pl: IntentMatcher, en: IntentMatcher) -> None:
    assert pl.match("nie swieci latarnja").candidates[0].service_code == "street_light_out"
    assert en.match("the streat lihgt is out").candidates[0].service_code == "street_light_out"


def test_candidates_are_ranked_and_bounded(pl: IntentMatcher) -> None:
    result = pl.match("hałas z budowy i głośna muzyka z klubu, śmieci i dziura")
    scores = [c.score for c in result.candidates]
    assert 1 <= len(scores) <= 3
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s < 1 for s in scores)


# --- place words, shared words and short stems ---


@pytest.mark.parametrize(
    ("language", "text", "code"),
    [
        ("en", "a stray dog is running around by the bus stop", "stray_dog"),
        ("pl", "latarnia przy skrzyżowaniu miga", "street_light_out"),
        ("pl", "worki śmieci przy bramie", "illegal_dumping"),
        ("pl", "auto parkuje na przejściu", "illegal_parking"),
    ],
)
def test_a_place_word_does_not_outvote_the_problem(
    pl: IntentMatcher, en: IntentMatcher, language: str, text: str, code: str
) -> None:
    result = (pl if language == "pl" else en).match(text)
    assert result.candidates[0].service_code == code
    # Outright or read back to the resident, but never a question between two services. Residents'
    # traffic-light reports name the crossing, so a lamp there may be read back to be sure.
    assert result.service_code == code


@pytest.mark.parametrize(
    ("language", "text", "code"),
    [
        ("en", "the pedestrian crossing", "traffic_light_fault"),
        ("en", "the bus stop is damaged", "bus_stop_damaged"),
        ("pl", "przejście dla pieszych", "traffic_light_fault"),
        ("pl", "przystanek jest zniszczony", "bus_stop_damaged"),
    ],
)
def test_a_place_alone_still_finds_the_service_it_names(
    pl: IntentMatcher, en: IntentMatcher, language: str, text: str, code: str
) -> None:
    result = (pl if language == "pl" else en).match(text)
    assert result.candidates[0].service_code == code
    assert result.service_code == code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("my neighbour fell on the cracked sidewalk", "damaged_pavement"),  # not a fallen tree
        ("abandoned tyres dumped in the woods", "illegal_dumping"),  # not a vehicle
        ("an abandoned car with no plates", "abandoned_vehicle"),
        ("a tree has fallen across the road", "fallen_tree"),
    ],
)
def test_a_word_shared_with_another_service_does_not_decide(
    en: IntentMatcher, text: str, code: str
) -> None:
    assert en.match(text).candidates[0].service_code == code


def test_short_stems_are_not_matched_fuzzily(en: IntentMatcher) -> None:
    # "fire" is one letter from "tire", but a different word
    assert "illegal_dumping" not in {c.service_code for c in en.match("the fire").candidates}
    assert en.match("old tire").candidates[0].service_code in {
        "illegal_dumping",
        "hazardous_waste",
    }


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("drzewa przewróciły się na drogę", "fallen_tree"),
        ("złamana gałąź wisi nad chodnikiem", "fallen_tree"),
        ("powalone drzewo leży na jezdni", "fallen_tree"),
        ("dzikie wysypiska za blokiem", "illegal_dumping"),
        ("dziki przy szkole", "stray_dog"),  # wild boars, not a wild dump
        ("wrak samochodu bez tablic", "abandoned_vehicle"),
    ],
)
def test_inflected_forms_of_multiword_keywords_still_match(
    pl: IntentMatcher, text: str, code: str
) -> None:
    result = pl.match(text)
    assert result.candidates[0].service_code == code
    assert result.service_code == code


# --- decisions ---


def test_a_vague_noise_complaint_is_ambiguous_within_its_group(
    pl: IntentMatcher, en: IntentMatcher
) -> None:
    for matcher, word in ((pl, "hałas"), (en, "noise")):
        result = matcher.match(word)
        assert result.decision is Decision.AMBIGUOUS
        assert result.group == "noise"  # the dialog can still ask within the noise group
        assert result.service_code is None


def test_nothing_recognisable_is_no_match(pl: IntentMatcher, en: IntentMatcher) -> None:
    for matcher, text in ((pl, "dzień dobry, mam pytanie"), (en, "hello, I have a question")):
        result = matcher.match(text)
        assert result.decision is Decision.NO_MATCH
        assert result.service_code is None
    assert pl.match("").decision is Decision.NO_MATCH


def test_lights_alone_could_be_street_or_traffic_lights(en: IntentMatcher) -> None:
    result = en.match("the lights are broken")
    assert result.decision is Decision.AMBIGUOUS
    assert {c.service_code for c in result.candidates[:2]} == {
        "street_light_out",
        "traffic_light_fault",
    }
    assert result.group == "roads"


# --- special intents ---


@pytest.mark.parametrize(
    ("language", "text", "special"),
    [
        ("pl", "tak", "yes"),
        ("pl", "tak, zgadza się", "yes"),
        ("pl", "no tak", "yes"),  # "no" is a Polish filler, not a refusal
        ("pl", "nie", "no"),
        ("pl", "nie zgadza się", "no"),
        ("en", "yes", "yes"),
        ("en", "yeah that's right", "yes"),
        ("en", "no", "no"),
        ("en", "nope, that's wrong", "no"),
        ("pl", "chcę rozmawiać z konsultantem", "agent"),
        ("pl", "proszę z człowiekiem", "agent"),
        ("pl", "operator", "agent"),
        ("en", "agent", "agent"),
        ("en", "can I speak to someone", "agent"),
        ("en", "a real person please", "agent"),
    ],
)
def test_special_intents(
    pl: IntentMatcher, en: IntentMatcher, language: str, text: str, special: str
) -> None:
    result = (pl if language == "pl" else en).match(text)
    assert result.special == special
    assert result.service_code is None


def test_no_inside_a_report_is_not_a_refusal(pl: IntentMatcher) -> None:
    result = pl.match("nie świeci latarnia")
    assert result.special is None


def test_a_person_lying_in_the_cold_is_not_a_request_for_an_agent(pl: IntentMatcher) -> None:
    assert pl.match("na mrozie leży człowiek").special is None


@pytest.mark.parametrize(
    ("language", "text", "chosen"),
    [
        ("pl", "po angielsku", "en"),
        ("pl", "English", "en"),
        ("pl", "po polsku", "pl"),
        ("en", "Polish please", "pl"),
        ("en", "English", "en"),
    ],
)
def test_language_choice(
    pl: IntentMatcher, en: IntentMatcher, language: str, text: str, chosen: str
) -> None:
    result = (pl if language == "pl" else en).match(text)
    assert (result.special, result.language) == ("language", chosen)


# --- addresses ---


@pytest.mark.parametrize(
    ("text", "address", "street", "number"),
    [
        (
            "na ulicy Marszałkowskiej 12 nie świeci latarnia",
            "ulicy Marszałkowskiej 12",
            "Marszałkowskiej",
            "12",
        ),
        ("ulica Marszałkowska 12, dziura", "ulica Marszałkowska 12", "Marszałkowska", "12"),
        ("na Marszałkowskiej 12 leży martwy kot", "Marszałkowskiej 12", "Marszałkowskiej", "12"),
        ("przy ul. Grójeckiej 5a dziura w jezdni", "ul. Grójeckiej 5a", "Grójeckiej", "5a"),
        ("przy ulicy Polnej jest ciemno", "ulicy Polnej", "Polnej", None),
    ],
)
def test_polish_addresses(
    pl: IntentMatcher, text: str, address: str, street: str, number: str | None
) -> None:
    found = pl.match(text).address
    assert found is not None
    assert (found.text, found.street, found.number) == (address, street, number)


@pytest.mark.parametrize(
    ("text", "address", "street", "number"),
    [
        ("the street light at Main Street 5 is out", "Main Street 5", "Main Street", "5"),
        ("pothole outside 12 Elm Road", "12 Elm Road", "Elm Road", "12"),
        ("storm drain blocked on 5th Avenue", "5th Avenue", "5th Avenue", None),
    ],
)
def test_english_addresses(
    en: IntentMatcher, text: str, address: str, street: str, number: str | None
) -> None:
    found = en.match(text).address
    assert found is not None
    assert (found.text, found.street, found.number) == (address, street, number)


def test_a_street_name_with_a_number_is_not_evidence(pl: IntentMatcher) -> None:
    # "Parkowa" must not pull the report towards the park services.
    result = pl.match("ulica Parkowa 3, nie świeci latarnia")
    assert result.candidates[0].service_code == "street_light_out"
    assert all(c.service_code != "playground_bench" for c in result.candidates)


def test_no_address_in_plain_reports(pl: IntentMatcher, en: IntentMatcher) -> None:
    assert pl.match("nie odebrali śmieci").address is None
    assert en.match("the bin on our street is full").address is None


# --- robustness, speed, grammar ---


_CATALOGUE = load_services()
_PL = IntentMatcher(_CATALOGUE, "pl")
_EN = IntentMatcher(_CATALOGUE, "en")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_match_never_raises(text: str) -> None:
    for matcher in (_PL, _EN):
        result = matcher.match(text)
        assert isinstance(result.decision, Decision)


def test_matching_is_deterministic_and_fast(catalogue: ServiceCatalogue) -> None:
    text = "dzień dobry, na ulicy Marszałkowskiej 12 od wczoraj nie świeci latarnia"
    first = IntentMatcher(catalogue, "pl").match(text)
    matcher = IntentMatcher(catalogue, "pl")
    assert matcher.match(text) == first
    t0 = time.perf_counter()
    for _ in range(200):
        matcher.match(text)
    assert (time.perf_counter() - t0) / 200 < 0.001


def test_unknown_language_is_refused(catalogue: ServiceCatalogue) -> None:
    with pytest.raises(ValueError):
        IntentMatcher(catalogue, "de")


def test_grammar_phrases(catalogue: ServiceCatalogue) -> None:
    for language in ("pl", "en"):
        phrases = grammar_phrases(language, catalogue)
        assert len(phrases) == len(set(phrases))
        assert all(p == p.lower() for p in phrases)
        street_light = catalogue.get("street_light_out")
        assert street_light is not None
        assert street_light.phrases[language][0].lower() in phrases
    assert {"tak", "nie", "konsultant", "po angielsku"} <= set(grammar_phrases("pl", catalogue))
    assert {"yes", "no", "agent", "english"} <= set(grammar_phrases("en", catalogue))


# --- held-out accuracy (the benchmark's figures) ---


@pytest.mark.parametrize("language", ["pl", "en"])
@pytest.mark.parametrize("which", sorted(ACCURACY_FLOOR))
def test_heldout_accuracy(catalogue: ServiceCatalogue, language: str, which: str) -> None:
    rows = load_heldout(language, which)
    assert len(rows) >= 100
    codes = {r["service_code"] for r in rows}
    assert "agent" in codes and None in codes
    assert len(codes - {"agent", None}) >= 30  # most services are covered
    assert codes - {"agent", None} <= set(catalogue.services)
    figures = evaluate(IntentMatcher(catalogue, language), rows)
    assert figures["top1_accuracy"] >= ACCURACY_FLOOR[which], figures["misses"]
    assert figures["misses_wrong_confident"] <= MAX_WRONG_CONFIDENT, figures[
        "wrong_confident_examples"
    ]


@pytest.mark.parametrize("language", ["pl", "en"])
def test_shipped_examples_cover_every_service_and_none_is_measured_on(
    catalogue: ServiceCatalogue, language: str
) -> None:
    examples = load_examples(language)
    per_code = Counter(e.service_code for e in examples)
    assert set(per_code) - {"agent", None} == set(catalogue.services)
    assert min(per_code[code] for code in catalogue.services) >= 20
    # The matcher indexes examples of services; none of them may be an utterance it is measured on.
    measured = {
        fold(row["text"]) for which in ACCURACY_FLOOR for row in load_heldout(language, which)
    }
    indexed = {fold(e.text) for e in examples if e.service_code not in ("agent", None)}
    assert not measured & indexed, sorted(measured & indexed)


@pytest.mark.parametrize("language", ["pl", "en"])
def test_shipped_agent_examples_reach_an_agent(
    pl: IntentMatcher, en: IntentMatcher, language: str
) -> None:
    matcher = pl if language == "pl" else en
    asks = [e.text for e in load_examples(language) if e.service_code == "agent"]
    missed = [text for text in asks if matcher.match(text).special != "agent"]
    assert len(missed) <= len(asks) // 10, missed


def test_examples_teach_what_the_catalogue_does_not_say(catalogue: ServiceCatalogue) -> None:
    text = "pudło pełne puszek i butelek wysypuje się na chodnik w parku"
    without = IntentMatcher(catalogue, "pl", examples=())
    examples = [Example("kosz w parku pełny puszek", "overflowing_bin")] * 2
    taught = IntentMatcher(catalogue, "pl", examples=examples)
    assert taught.match(text).candidates[0].service_code == "overflowing_bin"
    assert taught.score(["puszek"]).get("overflowing_bin", 0) > without.score(["puszek"]).get(
        "overflowing_bin", 0
    )


def test_examples_of_unknown_services_and_one_off_words_weigh_little(
    catalogue: ServiceCatalogue,
) -> None:
    once = IntentMatcher(catalogue, "en", examples=[Example("zorblax by the lamp", "graffiti")])
    twice = IntentMatcher(
        catalogue, "en", examples=[Example("zorblax by the lamp", "graffiti")] * 2
    )
    assert once.score(["zorblax"])["graffiti"] < twice.score(["zorblax"])["graffiti"]
    unknown = IntentMatcher(catalogue, "en", examples=[Example("zorblax", "no_such_service")] * 3)
    assert unknown.score(["zorblax"]) == {}
