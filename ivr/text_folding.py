"""Text as the intent matcher and the address finder see it: folded, tokenised, stemmed.

Pure: ``fold`` drops case, diacritics and apostrophes (ł->l, ą->e); ``tokenise`` keeps each
token's place in the original text so it can be quoted back; ``stem_pl`` and ``stem_en`` strip
inflections; ``STOP_WORDS`` are the fillers and function words that carry no intent.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# ą and ę alternate inside Polish stems (gałąź/gałęzie, dąb/dęby) and both end many forms,
# so both fold to "e".
_FOLD = str.maketrans({"ł": "l", "ą": "ę", "’": "", "'": "", "`": ""})
_TOKEN = re.compile(r"\d+(?:st|nd|rd|th)\b|\d+[a-z]?(?:/\d+[a-z]?)?|[^\W\d_]+\.?|[,;:!?]")


def fold(text: str) -> str:
    """Lower case without diacritics or apostrophes: 'Gałąź spadła' -> 'galez spadla'."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Longest first. Nominal, adjectival and common verbal endings, diacritics folded (ą/ę -> e).
_PL_SUFFIXES = sorted(
    word_set(
        """owiakach owskiej owskich owskimi iejszy owych owymi owego owemu owej owie owa owe
        owy ow owi iami ami iach ach iom om iem em iego ego iemu emu iej ej ymi imi ych ich ym
        im ania anie aniu eniu enie enia eniem aniem ujemy ujecie uja uje ujesz owac ywac iwac
        ac ic yc alem alam ilem ilam ylem ylam ales ali aly ala alo ili ily ila ilo il yli yla
        ylo yl al ona one ony ono ana ane any ani eni ene ena ia ie io iu a e i o u y"""
    ),
    key=lambda suffix: (-len(suffix), suffix),
)
_MIN_STEM = 3


def stem_pl(word: str) -> str:
    """Strip the longest known inflection suffix, keeping at least 3 letters of stem."""
    if word.isdigit():
        return word
    for suffix in _PL_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


_EN_IRREGULAR = dict(
    pair.split(":")
    for pair in """broken:break broke:break fell:fall fallen:fall ran:run children:child
    kids:kid men:man people:person left:leave neighbour:neighbor neighbours:neighbor
    neighbors:neighbor
    tyres:tire tyre:tire tires:tire lorry:truck lorries:truck rubbish:garbage trash:garbage
    litter:litter kerb:curb""".split()
)
_DOUBLE_OK = word_set("ll ss zz ff")


def stem_en(word: str) -> str:
    """A light English stemmer: plurals, -ing, -ed, -ion, -ly, a final -e and doubled letters."""
    if word in _EN_IRREGULAR:
        return _EN_IRREGULAR[word]
    if word.isdigit() or len(word) <= 3:
        return word
    w = word
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix, repl in (("ied", "y"), ("ing", ""), ("ed", ""), ("ion", ""), ("ly", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)] + repl
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-2:] not in _DOUBLE_OK and w[-1] not in "aeiou":
        w = w[:-1]
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


STEMMERS = {"pl": stem_pl, "en": stem_en}

# Fillers and function words, folded. Meaningful question words (kiedy, gdzie, when, where)
# stay: they separate information requests from reports.
STOP_WORDS = {
    "pl": word_set(
        """a i w we z ze na do od po o u przy pod nad za przed obok kolo jest se byl bylo to
        ten ta te tego tej tym tu tam sie mi mnie moj moja moje mojej mojego moim nasz nasza
        nasze naszej naszego naszym nam nas nie no tak czy co jak jaki jaka jakie jakis
        jakas ktos cos bo ale juz tez jeszcze bardzo dzien dobry witam halo prosze pan pani
        panstwo chcialem chcialam chce chcialbym chcialabym zglosic zglaszam dzwonie sprawie
        wlasnie mam ma mamy jestem wiec oraz lub albo dla teraz tutaj znowu caly cala cale
        dzis dzisiaj the"""
    ),
    "en": word_set(
        """a an the is are was were be been being am i im ive my me we our us you your it its
        this that thats there theres here of on in at to for from by with and or but so as
        has have had hasnt havent do does did dont doesnt didnt not no just please hi hello
        hey good morning afternoon evening id like would want wanted need needs report
        calling call about can could get got all very really still again they them their
        theyre he she his her will wont some any also now today yes yeah ok okay um uh oh
        well s t d ll whats up"""
    ),
}


@dataclass(frozen=True)
class Token:
    raw: str  # as written
    word: str  # folded
    start: int
    end: int


def tokenise(text: str) -> list[Token]:
    # Fold character by character, remembering where each folded character came from, so an
    # address can be returned as the resident's own words ("Marszałkowskiej 12").
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        for f in fold(ch):
            chars.append(f)
            origin.append(i)
    folded = "".join(chars)
    out = []
    for m in _TOKEN.finditer(folded):
        start, end = origin[m.start()], origin[m.end() - 1] + 1
        out.append(Token(text[start:end], m.group(0), start, end))
    return out


def is_word(t: Token) -> bool:
    return t.word[0].isalpha()


def is_number(t: Token) -> bool:
    return t.word[0].isdigit()
