"""Transcript -> service: a small, deterministic intent matcher for the speech IVR.

Pure: built once per language from the service catalogue, then `match()` does no I/O and
keeps no state between calls (a bounded cache of fuzzy look-ups aside). Folding, tokens,
stemmers and stop words are in ivr/text_folding.py, the address finder in ivr/addresses.py.

Scoring
-------
1. Normalise: lower case, fold diacritics (ł->l, ą->a ...), drop apostrophes, tokenise.
   Address spans with a house number ("ulicy Polnej 5", "Main Street 5") are cut out first,
   so street names such as "Parkowa" or "Park Lane" are not taken as evidence; the first
   address found (with or without a number) is returned in the result.
2. Drop stop and filler words ("dzień dobry", "chciałam zgłosić", "I'd like to report"), then
   stem: Polish by stripping the longest known inflection suffix (latarnia/latarni/latarnie ->
   latarn, śmieci/śmieciach -> smiec), English lightly (dumped/dumping -> dump, bins -> bin).
   Two adjacent words that are one vocabulary term when joined ("pot hole") become that term.
3. Each query stem q is mapped to vocabulary terms t with a similarity s(q, t): 1.0 when
   equal, 0.85 when one is a prefix of the other (stem >= 4 chars, what a crude stemmer
   leaves of consonant alternations: dziura/dziurze), otherwise, when both stems have at
   least 5 letters, the best of trigram Dice and 1 - edit distance / length, kept at >= 0.72
   and scaled by 0.9 (recognition errors). Shorter stems one letter apart are usually other
   words (fire/tire, lean/clean), so they are not matched fuzzily.
4. Evidence for a service S:  E(S) = Σ_q max_t s(q, t) · w_S(t) · idf(t)
   + 0.5 · min(idf) for every adjacent pair of query terms that is also adjacent in one of
   S's phrases, examples or keywords. w_S(t) is 1.0 for a term of S's keywords or name, 0.5
   for one only in its phrases, and 0.5 · min(1, k / 2) for one only in k of its examples (a
   word met once may be incidental). idf(t) = ln(1 + N / df(t)) over the N services, df
   counting each service by min(1, w_S(t) / 0.5), so "ulica" or "street" (in many services)
   counts little and "latarnia" or "pothole" counts a lot.
   Place and context words (crossing, intersection, bus stop, gate, school; przejście,
   skrzyżowanie, przystanek, brama) say where a problem is, not what it is. Their evidence
   (and that of any pair containing one) is kept apart as C(S). When the other evidence is
   weak (best E < 1.0) it counts in full, so "the crossing lights" or "przystanek" alone
   still find a service; otherwise S gets C(S) · (0.3 + 0.7 · (E(S) / max E)²): a place
   supports a service the problem words already point to, and cannot outvote them ("the
   lamp at the pedestrian crossing flickers" is a street light, not the traffic lights).
5. Score(S) = 1 - exp(-E(S) / 3.0), in [0, 1): one distinctive keyword gives ~0.7, two ~0.9.
6. Decision from the best score s1 and the runner-up's evidence ratio r = E2 / E1:
   no_match if s1 < 0.35; ambiguous if r >= 0.8 (two services equally likely; if they share
   a group, `group` names it); confident if s1 >= 0.75 and r <= 0.55; confirm otherwise
   (the dialog reads the service back and asks yes/no). The thresholds were checked on the
   catalogue's own phrases, each matched with itself left out (leave-one-out).
Examples: besides the catalogue's own phrases, each language ships a set of labelled resident
utterances (ivr/intent_examples_<language>.json, about 25 per service, written as residents
speak: symptoms rather than category names, inflected forms, recognition-like lower case). They
are indexed like phrases. They never overlap the utterance sets the benchmark measures with.
Special intents are checked before services: yes / no (the whole utterance is yes/no words
and fillers), language choice (a short utterance naming a language) and agent (a word for an
operator, or "talk to someone"), unless a service is matched confidently alongside it.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cases.services import ServiceCatalogue, load_services
from ivr.addresses import Address, extract_address
from ivr.text_folding import STEMMERS, STOP_WORDS, is_word, tokenise, word_set

SPECIAL_AGENT = "agent"
SPECIAL_YES = "yes"
SPECIAL_NO = "no"
SPECIAL_LANGUAGE = "language"

SATURATION = 3.0
MIN_SCORE = 0.35
CONFIDENT_SCORE = 0.75
CONFIDENT_RATIO = 0.55
AMBIGUOUS_RATIO = 0.8
TOP_K = 3


class Decision(StrEnum):
    CONFIDENT = "confident"
    CONFIRM = "confirm"
    AMBIGUOUS = "ambiguous"
    NO_MATCH = "no_match"


@dataclass(frozen=True)
class Candidate:
    service_code: str
    group: str
    score: float


@dataclass(frozen=True)
class Example:
    """A labelled utterance: a service code, "agent", or None for one too vague to route."""

    text: str
    service_code: str | None


EXAMPLES_DIR = Path(__file__).parent


@functools.cache
def load_examples(language: str) -> tuple[Example, ...]:
    """The labelled utterances shipped for a language (none for a language without a file)."""
    path = EXAMPLES_DIR / f"intent_examples_{language}.json"
    if not path.exists():
        return ()
    rows = json.loads(path.read_text(encoding="utf-8"))
    return tuple(Example(str(row["text"]), row["service_code"]) for row in rows)


@dataclass(frozen=True)
class MatchResult:
    decision: Decision
    candidates: tuple[Candidate, ...]
    special: str | None = None  # agent / yes / no / language
    language: str | None = None  # the language chosen, when special == "language"
    address: Address | None = None
    group: str | None = None  # the group the best candidates share, when ambiguous

    @property
    def service_code(self) -> str | None:
        """The best service, when the decision lets the dialog use it (outright or to confirm)."""
        if self.special is None and self.decision in (Decision.CONFIDENT, Decision.CONFIRM):
            return self.candidates[0].service_code
        return None


# --- words of the special intents ----------------------------------------------------------

_YES = {
    "pl": word_set(
        """tak zgadza dokladnie oczywiscie jasne potwierdzam owszem mhm dobrze ok okej yes
        racja poprawnie"""
    ),
    "en": word_set(
        """yes yeah yep yup sure correct right exactly ok okay absolutely indeed affirmative
        definitely mhm aye"""
    ),
}
_NO = {
    "pl": word_set("nie niestety wcale bledne blednie zle niepoprawnie inna inne innego pomylka"),
    "en": word_set("no nope nah not wrong incorrect negative isnt"),
}
_YES_NO_FILLER = {
    "pl": word_set(
        """no to sie jest prosze dziekuje chodzi o tak ze mi ja jak najbardziej mowilem mowilam
        juz ta ten sprawa cos a chyba"""
    ),
    "en": word_set(
        """that thats is it its s please thank thanks you uh um hmm oh well i think so yes the
        one right all sir madam of course quite at a"""
    ),
}
_AGENT_WORDS = word_set(
    """agent agenta agentem agentka operator operatora operatorem operatorka konsultant
    konsultanta konsultantem konsultantka konsultantke konsultantki czlowiekiem czlowieka
    human representative rep advisor adviser receptionist pracownikiem doradca doradcy
    switchboard"""
)
# A verb of talking or an adjective like "real", together with a word for a person.
_AGENT_CUES = word_set(
    """rozmawiac porozmawiac polaczyc polacz polaczcie przelaczyc przelacz przelaczcie mowic
    talk speak connect transfer put through
    pogadac real live actual prawdziwy prawdziwa prawdziwym zywy zywym poprosze"""
)
_AGENT_OBJECTS = word_set(
    """kims ktos czlowiek osoba someone somebody person anyone anybody pracownik human
    czlowiekiem obslugi obsluga staff"""
)
_LANGUAGE_WORDS = {
    "en": word_set("english angielski angielsku angielskim inglisz anglais"),
    "pl": word_set("polski polsku polskim polish polskiego polska"),
}

# Place and context words: where the problem is, not what it is ("the lamp at the pedestrian
# crossing", "a dog by the bus stop", "rubbish by the gate"). Several services name such a
# place, and for one of them it may be the thing itself (crossing -> traffic lights), so they
# count fully only when nothing else in the utterance points to a service; otherwise their
# evidence is scaled by _CONTEXT_WEIGHT. Stemmed when the matcher is built.
_CONTEXT_WORDS = {
    "pl": word_set(
        """skrzyzowanie skrzyzowaniu skrzyzowaniem przejscie przejsciu przejsciem pieszych
        pieszy przystanek przystanku przystankiem rog rogu brama bramie bramy podworko
        podworku blok bloku budynek budynku klatka klatce szkola szkole szkoly przychodnia
        przychodni sklep sklepem sklepu kosciol kosciolem szpital szpitala dom domu domem
        ogrodek ogrodku las lesie lasu"""
    ),
    "en": word_set(
        """intersection junction crossing crosswalk zebra pedestrian corner gate
        school building clinic shop store church hospital station house home garden yard
        forest woods bus stop tram shelter"""
    ),
}


# --- the matcher ---------------------------------------------------------------------------


def _trigrams(stem: str) -> frozenset[str]:
    padded = f"#{stem}#"
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def _edit_distance(a: str, b: str) -> int:
    """Edits between two words, a swap of two neighbouring letters counting as one (lihgt)."""
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        before, previous = previous, current
    return previous[-1]


_FUZZY_MIN = 0.72
_FUZZY_MIN_LEN = 5
_FUZZY_SCALE = 0.9
_PREFIX_SIM = 0.85
_PHRASE_WEIGHT = 0.5
_PART_WEIGHT = 0.75
_PAIR_BONUS = 0.5
_CONTEXT_WEIGHT = 0.3
_CONTEXT_FLOOR = 1.0
_CACHE_SIZE = 4096
EXAMPLE_RECURRENCE = 2  # examples of a service a word must recur in to count as a phrase's


class IntentMatcher:
    """Matches transcripts in one language against the service catalogue (see module doc)."""

    def __init__(
        self,
        catalogue: ServiceCatalogue,
        language: str,
        examples: Sequence[Example] | None = None,
    ) -> None:
        """examples: labelled utterances indexed like phrases; None means the shipped ones.
        Examples of services the catalogue does not have (or of "agent") are not indexed."""
        if language not in STEMMERS:
            raise ValueError(f"no stemmer for language {language!r}")
        if examples is None:
            examples = load_examples(language)
        examples_of: dict[str, list[str]] = defaultdict(list)
        for example in examples:
            if example.service_code is not None:
                examples_of[example.service_code].append(example.text)
        self.language = language
        self._stem = STEMMERS[language]
        self._stop = STOP_WORDS[language]
        self._groups = {s.code: s.group for s in catalogue}
        self._weights: dict[str, dict[str, float]] = defaultdict(dict)  # term -> service -> w
        self._pairs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for service in catalogue:
            strong = [*service.keywords[language], service.name[language]]
            for text in strong:
                stems = self._content_stems(text)
                # A word of a multi-word keyword ("recycling centre") is only part of it.
                weight = 1.0 if len(stems) <= 1 else _PART_WEIGHT
                for term in self._index_terms(text):
                    if weight > self._weights[term].get(service.code, 0.0):
                        self._weights[term][service.code] = weight
                for a, b in itertools.pairwise(stems):
                    self._pairs[(a, b)].add(service.code)
            for text in service.phrases[language]:
                stems = self._content_stems(text)
                for term in stems:
                    self._weights[term].setdefault(service.code, _PHRASE_WEIGHT)
                for a, b in itertools.pairwise(stems):
                    self._pairs[(a, b)].add(service.code)
            # A word in one example of a service may be incidental ("a branch leaning on the
            # lamp post"); one that recurs across its examples is how residents name it.
            seen_in: dict[str, int] = defaultdict(int)
            for text in examples_of.get(service.code, ()):
                stems = self._content_stems(text)
                for term in set(stems):
                    seen_in[term] += 1
                for a, b in itertools.pairwise(stems):
                    self._pairs[(a, b)].add(service.code)
            for term, count in seen_in.items():
                weight = _PHRASE_WEIGHT * min(1.0, count / EXAMPLE_RECURRENCE)
                if weight > self._weights[term].get(service.code, 0.0):
                    self._weights[term][service.code] = weight
        n = len(self._groups)
        # Document frequency weighted the same way, so an incidental word elsewhere barely
        # lowers a keyword's weight.
        self._idf = {
            t: math.log(1 + n / sum(min(1.0, w / _PHRASE_WEIGHT) for w in s.values()))
            for t, s in self._weights.items()
        }
        self._trigram_index: dict[str, list[str]] = defaultdict(list)
        self._gram_count: dict[str, int] = {}
        for term in self._weights:
            if len(term) >= 4:
                grams = _trigrams(term)
                self._gram_count[term] = len(grams)
                for g in grams:
                    self._trigram_index[g].append(term)
        self._fuzzy_cache: dict[str, tuple[tuple[str, float], ...]] = {}
        self._context = frozenset(self._stem(w) for w in _CONTEXT_WORDS[language])

    # -- building --

    def _content_stems(self, text: str) -> list[str]:
        return [
            self._stem(t.word) for t in tokenise(text) if is_word(t) and t.word not in self._stop
        ]

    def _index_terms(self, text: str) -> set[str]:
        terms = set(self._content_stems(text))
        # A keyword "street light" is also indexed as "streetlight": either spelling finds it.
        words = [t.word for t in tokenise(text) if is_word(t) and t.word not in self._stop]
        for a, b in itertools.pairwise(words):
            terms.add(self._stem(a + b))
        return terms

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self._weights)

    # -- matching --

    def _lookup(self, stem: str) -> tuple[tuple[str, float], ...]:
        """Vocabulary terms similar to `stem`, with their similarity (exact, prefix, fuzzy)."""
        if stem in self._weights:
            return ((stem, 1.0),)
        cached = self._fuzzy_cache.get(stem)
        if cached is not None:
            return cached
        found: dict[str, float] = {}
        if len(stem) >= 4:
            grams = _trigrams(stem)
            shared: dict[str, int] = defaultdict(int)
            for g in grams:
                for term in self._trigram_index.get(g, ()):
                    shared[term] += 1
            for term, count in shared.items():
                if term.startswith(stem) or stem.startswith(term):
                    found[term] = _PREFIX_SIM
                    continue
                if min(len(stem), len(term)) < _FUZZY_MIN_LEN:
                    continue  # short stems: one letter off is another word (fire/tire)
                dice = 2 * count / (len(grams) + self._gram_count[term])
                if dice < 0.45 and abs(len(stem) - len(term)) > 1:
                    continue  # a swap of two letters breaks most trigrams of a short word
                edit = 1 - _edit_distance(stem, term) / max(len(stem), len(term))
                sim = max(dice, edit)
                if sim >= _FUZZY_MIN:
                    found[term] = sim * _FUZZY_SCALE
        result = tuple(sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
        if len(self._fuzzy_cache) < _CACHE_SIZE:
            self._fuzzy_cache[stem] = result
        return result

    def _query_terms(self, words: list[str]) -> list[tuple[tuple[str, float], ...]]:
        """Per content word, the vocabulary terms it maps to; joined pairs first ('pot hole')."""
        out: list[tuple[tuple[str, float], ...]] = []
        i = 0
        while i < len(words):
            if i + 1 < len(words):
                joined = self._stem(words[i] + words[i + 1])
                apart = (
                    self._stem(words[i]) in self._weights
                    and self._stem(words[i + 1]) in self._weights
                )
                if joined in self._weights and not apart:
                    out.append(((joined, 1.0),))
                    i += 2
                    continue
            out.append(self._lookup(self._stem(words[i])))
            i += 1
        return out

    def score(self, words: list[str]) -> dict[str, float]:
        """Evidence per service for folded content words (see the module doc, step 4)."""
        terms = self._query_terms(words)
        evidence: dict[str, float] = defaultdict(float)
        context: dict[str, float] = defaultdict(float)  # from place words only
        for matches in terms:
            best: dict[str, tuple[float, bool]] = {}
            for term, sim in matches:
                idf = self._idf[term]
                is_context = term in self._context
                for code, weight in self._weights[term].items():
                    value = sim * weight * idf
                    if value > best.get(code, (0.0, False))[0]:
                        best[code] = (value, is_context)
            for code, (value, is_context) in best.items():
                (context if is_context else evidence)[code] += value
        for left, right in itertools.pairwise(terms):
            bonus: dict[str, tuple[float, bool]] = {}
            for a, _ in left:
                for b, _ in right:
                    is_context = a in self._context or b in self._context
                    for code in self._pairs.get((a, b), ()):
                        value = _PAIR_BONUS * min(self._idf[a], self._idf[b])
                        if value > bonus.get(code, (0.0, False))[0]:
                            bonus[code] = (value, is_context)
            for code, (value, is_context) in bonus.items():
                (context if is_context else evidence)[code] += value
        # A place alone may name the service ("the crossing lights"); beside other evidence
        # it only says where.
        top = max(evidence.values(), default=0.0)
        for code, value in context.items():
            if top < _CONTEXT_FLOOR:
                scale = 1.0
            else:
                support = evidence.get(code, 0.0) / top
                scale = _CONTEXT_WEIGHT + (1 - _CONTEXT_WEIGHT) * support * support
            evidence[code] += scale * value
        return evidence

    def match(self, transcript: str) -> MatchResult:
        tokens = tokenise(transcript)
        address, address_span = extract_address(tokens, self.language)
        # Only a span with a house number is surely an address; "ulica nieodśnieżona" or
        # "the bus lane" must still count as evidence.
        cut = address_span if address is not None and address.number is not None else set()
        words = [t.word.rstrip(".") for k, t in enumerate(tokens) if k not in cut and is_word(t)]
        special = self._special(words)
        content = [w for w in words if w not in self._stop]
        evidence = self.score(content)
        ranked = sorted(evidence.items(), key=lambda kv: (-kv[1], kv[0]))
        candidates = tuple(
            Candidate(code, self._groups[code], round(1 - math.exp(-e / SATURATION), 4))
            for code, e in ranked[:TOP_K]
        )
        decision, group = self._decide(ranked)
        if special is not None:
            kind, language = special
            if kind == SPECIAL_AGENT and decision is Decision.CONFIDENT:
                # "the agent never called back about the pothole": the service wins.
                return MatchResult(decision, candidates, address=address)
            return MatchResult(
                Decision.CONFIDENT, candidates, special=kind, language=language, address=address
            )
        return MatchResult(decision, candidates, address=address, group=group)

    def _decide(self, ranked: list[tuple[str, float]]) -> tuple[Decision, str | None]:
        if not ranked:
            return Decision.NO_MATCH, None
        top = 1 - math.exp(-ranked[0][1] / SATURATION)
        if top < MIN_SCORE:
            return Decision.NO_MATCH, None
        ratio = ranked[1][1] / ranked[0][1] if len(ranked) > 1 else 0.0
        if ratio >= AMBIGUOUS_RATIO:
            close = {self._groups[c] for c, e in ranked if e >= AMBIGUOUS_RATIO * ranked[0][1]}
            return Decision.AMBIGUOUS, close.pop() if len(close) == 1 else None
        if top >= CONFIDENT_SCORE and ratio <= CONFIDENT_RATIO:
            return Decision.CONFIDENT, None
        return Decision.CONFIRM, None

    def _special(self, words: list[str]) -> tuple[str, str | None] | None:
        if not words:
            return None
        lang = self.language
        vocab = set(words)
        if vocab <= _YES[lang] | _NO[lang] | _YES_NO_FILLER[lang]:
            if vocab & _NO[lang] and not (lang == "pl" and vocab == {"no"}):
                return SPECIAL_NO, None
            if vocab & _YES[lang]:
                return SPECIAL_YES, None
        if len(words) <= 4:
            for code, names in _LANGUAGE_WORDS.items():
                if vocab & names:
                    return SPECIAL_LANGUAGE, code
        if vocab & _AGENT_WORDS or (vocab & _AGENT_CUES and vocab & _AGENT_OBJECTS):
            return SPECIAL_AGENT, None
        return None

    def grammar_phrases(self, catalogue: ServiceCatalogue) -> list[str]:
        return grammar_phrases(self.language, catalogue)


_SPECIAL_PHRASES = {
    "pl": [
        "tak",
        "nie",
        "zgadza się",
        "nie zgadza się",
        "konsultant",
        "operator",
        "chcę rozmawiać z konsultantem",
        "z człowiekiem",
        "po polsku",
        "po angielsku",
        "polski",
        "angielski",
    ],
    "en": [
        "yes",
        "no",
        "yeah",
        "nope",
        "that's right",
        "agent",
        "operator",
        "talk to a person",
        "speak to someone",
        "English",
        "Polish",
        "in Polish",
    ],
}


def grammar_phrases(language: str, catalogue: ServiceCatalogue | None = None) -> list[str]:
    """Phrases for the recogniser's grammar mode: the catalogue's phrases and keywords plus
    the special intents, lower case, each once, in a stable order."""
    catalogue = catalogue if catalogue is not None else load_services()
    seen: dict[str, None] = {}
    for service in catalogue:
        for text in [*service.phrases[language], *service.keywords[language]]:
            seen.setdefault(text.lower(), None)
    for text in _SPECIAL_PHRASES[language]:
        seen.setdefault(text.lower(), None)
    return list(seen)
