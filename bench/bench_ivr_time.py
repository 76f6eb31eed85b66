"""Model: how long a resident spends in the IVR before being queued, speech path vs keypad.

THIS IS A MODEL, not a measurement of calls. Prompt durations are real (every prompt is
rendered with ivr.prompts.render_prompts and its WAV length read); everything the resident
does is an assumed constant; the speech dialog's branch is decided by the real matcher
(ivr.intents.IntentMatcher) on the held-out utterances of tests/data/intents_heldout_*.json.

Assumptions
-----------
- Prompts are played to the end, no barge-in (conservative for both paths). The welcome is
  played in the default language (pl), both parts, as ivr.speech_dialog / ivr.dialog do.
- A spoken reply costs its words at 2.5 words/s, plus 0.7 s of silence for the endpointer to
  close the utterance, plus 0.15 s to decode. The utterance is the held-out text.
- The language is chosen by saying one word ("polski", "English"): 1 word spoken + 0.85 s.
  On the keypad, by a key press. Each key press takes 1 s.
- A yes or no to a confirmation takes 1 s in all (short word, endpoint, decode).
- Speech path, as ivr.speech_dialog runs it: welcome_speech, language word, open_question,
  utterance; then every recognised service is read back (confirm_<service>, confident or
  not) and answered "yes". Ambiguous: clarify + the two service names + "or", the resident
  says the name of the service meant, then confirm + yes. Agent request: queued at once.
- A first attempt that goes wrong (no_match, a wrong service that the resident rejects, an
  ambiguity not offering the service meant) costs its prompts, then not_understood or
  say_again + open_question + the utterance again, which is then assumed understood (the
  resident rephrases). Held-out rows with no service (too vague for any queue) miss twice
  and end, as the dialog does after two misses or rejections, in the keypad group menu.
- Information services: the clock stops at the "yes" (the request is identified and the IVR
  answers it itself, in place of an agent); counted apart as answered_by_ivr.
- Keypad path: welcome (keypad version), language key, group_menu played in full (residents
  listen to all options before choosing), group key. Only the group is known then: the
  agent still has to ask what the problem is, which is not counted here. It does not depend
  on the utterance, so its median and p90 are equal.
- Hold, queue and position announcements come after queueing on both paths: not counted.

    .venv/bin/python -m bench.bench_ivr_time
"""

from __future__ import annotations

import collections
import json
import statistics
import tempfile
import wave
from pathlib import Path
from typing import Any

from bench.common import write_result
from cases.catalogue import load_catalogue
from cases.services import ServiceCatalogue, load_services
from ivr.intents import SPECIAL_AGENT, Decision, IntentMatcher, MatchResult
from ivr.prompts import render_prompts
from ivr.speech_dialog import DEFAULT_LANGUAGE

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CACHE_DIR = Path("/var/cache/cityline/prompts")
LANGUAGES = ("pl", "en")

WORDS_PER_SECOND = 2.5
ENDPOINT_SILENCE = 0.7
DECODE = 0.15
YES_NO_REPLY = 1.0
KEY_PRESS = 1.0

Durations = dict[str, dict[str, float]]  # language -> prompt name -> seconds


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def prompt_durations() -> Durations:
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render_prompts(load_catalogue(), CACHE_DIR, Path(tmp))
        return {
            lang: {name: wav_seconds(Path(tmp) / lang / f"{name}.wav") for name in names}
            for lang, names in rendered.items()
        }


def spoken(words: int) -> float:
    return words / WORDS_PER_SECOND + ENDPOINT_SILENCE + DECODE


def keypad_seconds(d: Durations, language: str) -> float:
    return d[DEFAULT_LANGUAGE]["welcome"] + KEY_PRESS + d[language]["group_menu"] + KEY_PRESS


class SpeechModel:
    def __init__(self, d: Durations, services: ServiceCatalogue, language: str) -> None:
        self.p = d[language]
        self.d = d
        self.services = services
        self.language = language
        self.matcher = IntentMatcher(services, language)

    def _confirm(self, code: str) -> float:
        return self.p[f"confirm_{code}"] + YES_NO_REPLY

    def _clarify(self, result: MatchResult) -> float:
        a, b = (c.service_code for c in result.candidates[:2])
        return self.p["clarify"] + self.p[f"service_{a}"] + self.p["or"] + self.p[f"service_{b}"]

    def _miss(self, result: MatchResult) -> tuple[float, str]:
        """What a first attempt that went wrong costs, and the prompt that asks again."""
        if result.service_code is not None:  # a wrong service, read back and rejected
            return self.p[f"confirm_{result.service_code}"] + YES_NO_REPLY, "say_again"
        if result.decision is Decision.AMBIGUOUS and len(result.candidates) >= 2:
            return self._clarify(result) + spoken(1), "not_understood"  # "neither"
        return 0.0, "not_understood"

    def seconds(self, text: str, expected: str | None) -> tuple[float, str]:
        """Seconds from the start of the welcome to queueing, and the branch taken."""
        utterance = spoken(len(text.split()))
        t = self.d[DEFAULT_LANGUAGE]["welcome_speech"] + spoken(1) + self.p["open_question"]
        t += utterance
        result = self.matcher.match(text)
        if result.special == SPECIAL_AGENT:
            return t, "agent" if expected == SPECIAL_AGENT else "agent_unasked"
        if expected not in (None, SPECIAL_AGENT) and result.service_code == expected:
            return t + self._confirm(expected), str(result.decision)
        if (
            expected not in (None, SPECIAL_AGENT)
            and result.decision is Decision.AMBIGUOUS
            and expected in [c.service_code for c in result.candidates[:2]]
        ):
            name_words = len(self.services.services[expected].name[self.language].split())
            return t + self._clarify(result) + spoken(name_words) + self._confirm(expected), (
                "ambiguous"
            )
        cost, preface = self._miss(result)
        t += cost + self.p[preface] + self.p["open_question"] + utterance
        if expected is None:
            # Still nothing specific: the second miss hands over to the keypad group menu.
            t += self._miss(result)[0] + self.p["group_menu"] + KEY_PRESS
            return t, "vague_to_keypad"
        if expected == SPECIAL_AGENT:
            return t, "retry"
        return t + self._confirm(expected), "retry"


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 2),
        "p90_s": round(statistics.quantiles(ordered, n=10, method="inclusive")[8], 2),
        "mean_s": round(statistics.fmean(ordered), 2),
        "n": len(ordered),
    }


def main() -> None:
    services = load_services()
    d = prompt_durations()
    results: dict[str, Any] = {}
    print("IVR time before queueing: a MODEL (real prompt lengths, assumed resident timings)")
    for language in LANGUAGES:
        rows = json.loads((DATA / f"intents_heldout_{language}.json").read_text("utf-8"))
        model = SpeechModel(d, services, language)
        speech: list[float] = []
        branches: collections.Counter[str] = collections.Counter()
        answered_by_ivr = 0
        for row in rows:
            seconds, branch = model.seconds(row["text"], row["service_code"])
            speech.append(seconds)
            branches[branch] += 1
            code = row["service_code"]
            if code not in (None, SPECIAL_AGENT) and services.services[code].is_information:
                answered_by_ivr += 1
        keypad = [keypad_seconds(d, language)] * len(rows)
        results[language] = {
            "speech": summary(speech),
            "keypad": summary(keypad),
            "speech_branches": dict(branches.most_common()),
            "answered_by_ivr": answered_by_ivr,
        }
        s, k = results[language]["speech"], results[language]["keypad"]
        print(
            f"{language}: speech median {s['median_s']:.1f} s, p90 {s['p90_s']:.1f} s"
            f" (service known) | keypad median {k['median_s']:.1f} s, p90 {k['p90_s']:.1f} s"
            f" (group only) | n={s['n']}, branches {dict(branches.most_common())},"
            f" information requests answered by the IVR {answered_by_ivr}"
        )
    prompts = {
        "welcome_speech_pl": d[DEFAULT_LANGUAGE]["welcome_speech"],
        "welcome_pl": d[DEFAULT_LANGUAGE]["welcome"],
        **{f"group_menu_{lang}": d[lang]["group_menu"] for lang in LANGUAGES},
        **{f"open_question_{lang}": d[lang]["open_question"] for lang in LANGUAGES},
    }
    print("prompt seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in prompts.items()))
    path = write_result(
        "bench_ivr_time",
        {
            "kind": "model",
            "assumptions": {
                "words_per_second": WORDS_PER_SECOND,
                "endpoint_silence_s": ENDPOINT_SILENCE,
                "decode_s": DECODE,
                "yes_no_reply_s": YES_NO_REPLY,
                "key_press_s": KEY_PRESS,
                "barge_in": False,
            },
            "prompt_seconds": {k: round(v, 2) for k, v in prompts.items()},
            "languages": results,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
