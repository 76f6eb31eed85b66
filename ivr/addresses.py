"""Street addresses in a transcript: "ulicy Polnej 5", "przy ul. Grójeckiej", "5 Main Street".

Pure: works on the tokens of ivr/text_folding.py, so the address comes back in the resident's
own words while matching is done on folded text.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.text_folding import STOP_WORDS, Token, is_number, is_word, word_set


@dataclass(frozen=True)
class Address:
    text: str  # as spoken, e.g. "ulicy Polnej 5"
    street: str
    number: str | None


_STREET_PL = word_set(
    """ul ul. ulica ulicy ulice ulic al al. aleja alei aleje alejach plac placu pl. os os.
    osiedle osiedlu rondo rondzie skwer skwerze bulwar bulwarze"""
)
_STREET_EN = word_set(
    """street st st. road rd rd. avenue ave ave. lane ln square boulevard blvd way drive dr
    place close crescent terrace parkway highway"""
)
_ADDRESS_STOP_PL = word_set(
    "na przy w we pod obok kolo z ze od do i a ale bo jest se numer nr numerem przed za to"
)
_ADDRESS_STOP_EN = word_set(
    """on at in the of near by outside from to and or our my your their is are a an this that
    along off opposite behind down up number no corner junction every whole same next across
    over all"""
)


def extract_address(tokens: list[Token], language: str) -> tuple[Address | None, set[int]]:
    """The first street address in the utterance and the token indexes it spans."""
    street_words = _STREET_PL if language == "pl" else _STREET_EN
    stop = _ADDRESS_STOP_PL if language == "pl" else _ADDRESS_STOP_EN
    n = len(tokens)
    for i, tok in enumerate(tokens):
        if tok.word not in street_words:
            continue
        if language == "pl":
            # "ulica Marszałkowska 12", "przy ul. Grójeckiej": the name follows the type word.
            j, names = i + 1, list[int]()
            while j < n and is_word(tokens[j]) and tokens[j].word not in stop and len(names) < 3:
                names.append(j)
                j += 1
            if not names:
                continue
            number = j if j < n and is_number(tokens[j]) else None
            if number is None:
                names = names[:1]  # without a house number, only "ulicy Grójeckiej"
            span = list(range(i, (number if number is not None else names[-1]) + 1))
            return _address(tokens, span, names, number), set(span)
        # "Main Street 5", "5 Main Street", "on Elm Road": the name precedes the type word.
        j, names = i - 1, []
        while j >= 0 and len(names) < 2:
            t = tokens[j]
            if is_word(t) and t.word not in stop and t.word not in STOP_WORDS["en"]:
                names.insert(0, j)
                j -= 1
            elif is_number(t) and t.word[-1].isalpha() and not names:
                names.insert(0, j)  # "5th Avenue"
                j -= 1
            else:
                break
        if not names:
            continue
        start = names[0]
        number = None
        if i + 1 < n and is_number(tokens[i + 1]):
            number = i + 1
        elif start > 0 and is_number(tokens[start - 1]):
            number = start - 1
            start = number
        end = number if number is not None and number > i else i
        span = list(range(start, end + 1))
        street_span = [*names, i]
        return _address(tokens, span, street_span, number), set(span)
    if language == "pl":
        # "na Marszałkowskiej 12": a preposition, one name word, a house number.
        for k in range(1, n):
            if is_number(tokens[k]) and is_word(tokens[k - 1]):
                name = k - 1
                if tokens[name].word in stop or tokens[name].word in STOP_WORDS["pl"]:
                    continue
                if name > 0 and tokens[name - 1].word in {"na", "przy", "ul", "ul."}:
                    span = [name, k]
                    return _address(tokens, span, [name], k), set(span)
    return None, set()


def _address(
    tokens: list[Token], span: list[int], street: list[int], number: int | None
) -> Address:
    text = " ".join(tokens[k].raw for k in span)
    street_text = " ".join(tokens[k].raw for k in street if k != number)
    return Address(text, street_text, tokens[number].raw if number is not None else None)
