"""Benchmark: the speech intent matcher on utterances it was never built from, per language.

The matcher is built from the catalogue (keywords, names, phrases) and the labelled resident
utterances shipped in ivr/intent_examples_<language>.json. The measure is
tests/data/intents_unseen_{pl,en}.json (--set unseen, the default): 180 utterances per language
(5 per service, 5 asking for a person, 5 too vague to route), written from the services' names
and descriptions only, by a writer who saw neither the matcher, the catalogue's phrases nor the
examples, and never looked at while the matcher changed. Three older sets (--set heldout, fresh,
sealed) were written the same way in earlier rounds and served to tune the matcher's rules; they
are not among the examples either, so they are a second, slightly optimistic, measure.
An utterance counts as right when:
  - it names a service: the top candidate is that service (whatever the decision);
  - it is "agent": the special intent is agent;
  - it is null (too vague for any queue): the decision is not confident and no special fires.
A miss is safe when the matcher did not commit (confirm / ambiguous / no_match: the dialog
asks again or reads the service back), unsafe when it was confident about a wrong service.
The target is 95% top-1 and no unsafe misses. Also reported: the same figures for the
catalogue's own phrases, each matched with itself left out (the set the thresholds were set
on), and match latency.

    .venv/bin/python -m bench.bench_intents [--set unseen|heldout|fresh|sealed] [--repeat 20]
                                            [--no-loo] [--show-misses]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from cases.services import ServiceCatalogue, load_services
from ivr.intents import SPECIAL_AGENT, Decision, IntentMatcher, MatchResult

HELDOUT = Path(__file__).resolve().parent.parent / "tests" / "data"
LANGUAGES = ("pl", "en")
SETS = ("unseen", "heldout", "fresh", "sealed")  # tests/data/intents_<set>_<language>.json


def load_heldout(language: str, which: str = "unseen") -> list[dict[str, Any]]:
    path = HELDOUT / f"intents_{which}_{language}.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return rows


def judge(result: MatchResult, expected: str | None) -> tuple[bool, bool]:
    """(right, unsafe): unsafe means a confident decision for the wrong thing."""
    if expected is None:
        right = result.special is None and result.decision is not Decision.CONFIDENT
    elif expected == SPECIAL_AGENT:
        right = result.special == SPECIAL_AGENT
    else:
        right = (
            result.special is None
            and bool(result.candidates)
            and result.candidates[0].service_code == expected
        )
    return right, (not right and result.decision is Decision.CONFIDENT)


def evaluate(matcher: IntentMatcher, rows: list[dict[str, Any]]) -> dict[str, Any]:
    decisions = {d.value: 0 for d in Decision}
    right = unsafe = confident_right = 0
    misses: dict[str, int] = {d.value: 0 for d in Decision}
    unsafe_examples: list[dict[str, Any]] = []
    miss_list: list[dict[str, Any]] = []
    for row in rows:
        result = matcher.match(row["text"])
        ok, bad = judge(result, row["service_code"])
        decisions[result.decision.value] += 1
        right += ok
        confident_right += ok and result.decision is Decision.CONFIDENT
        if not ok:
            misses[result.decision.value] += 1
            miss_list.append(
                {
                    "text": row["text"],
                    "expected": row["service_code"],
                    "decision": result.decision.value,
                    "special": result.special,
                    "candidates": [
                        [c.service_code, round(c.score, 3)] for c in result.candidates[:3]
                    ],
                }
            )
        if bad:
            unsafe += 1
            top = result.special or (
                result.candidates[0].service_code if result.candidates else None
            )
            unsafe_examples.append(
                {"text": row["text"], "expected": row["service_code"], "got": top}
            )
    n = len(rows)
    return {
        "utterances": n,
        "top1": right,
        "top1_accuracy": round(right / n, 4),
        "confident_right": confident_right,
        "decisions": decisions,
        "misses_by_decision": misses,
        "misses_safe": sum(misses.values()) - unsafe,
        "misses_wrong_confident": unsafe,
        "wrong_confident_examples": unsafe_examples,
        "misses": miss_list,
    }


def leave_one_out(catalogue: ServiceCatalogue, language: str) -> dict[str, Any]:
    """Each catalogue phrase matched by a matcher built without it."""
    rows, matchers = [], []
    for service in catalogue:
        for i, phrase in enumerate(service.phrases[language]):
            phrases = dict(service.phrases)
            phrases[language] = service.phrases[language][:i] + service.phrases[language][i + 1 :]
            services = dict(catalogue.services)
            services[service.code] = dataclasses.replace(service, phrases=phrases)
            matchers.append(IntentMatcher(ServiceCatalogue(services, catalogue.keypad), language))
            rows.append({"text": phrase, "service_code": service.code})
    totals: dict[str, Any] = {}
    for matcher, row in zip(matchers, rows, strict=True):
        one = evaluate(matcher, [row])
        for key in ("top1", "misses_wrong_confident", "confident_right"):
            totals[key] = totals.get(key, 0) + one[key]
    n = len(rows)
    return {"utterances": n, **totals, "top1_accuracy": round(totals["top1"] / n, 4)}


def latency(matcher: IntentMatcher, texts: list[str], repeat: int) -> dict[str, float]:
    cold = []
    for text in texts:  # first sight of each utterance: fuzzy look-ups not yet cached
        t0 = time.perf_counter()
        matcher.match(text)
        cold.append((time.perf_counter() - t0) * 1000)
    warm = []
    for _ in range(repeat):
        for text in texts:
            t0 = time.perf_counter()
            matcher.match(text)
            warm.append((time.perf_counter() - t0) * 1000)
    warm.sort()
    cold.sort()
    return {
        "cold_median_ms": round(statistics.median(cold), 4),
        "cold_p95_ms": round(cold[int(0.95 * (len(cold) - 1))], 4),
        "median_ms": round(statistics.median(warm), 4),
        "p95_ms": round(warm[int(0.95 * (len(warm) - 1))], 4),
        "max_ms": round(warm[-1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20, help="timed passes over each set")
    parser.add_argument("--no-loo", action="store_true", help="skip the leave-one-out figures")
    parser.add_argument(
        "--set",
        choices=SETS,
        default="unseen",
        help="which utterance set: unseen (default, never looked at while tuning) or an older one",
    )
    parser.add_argument(
        "--show-misses", action="store_true", help="print every miss with its top candidates"
    )
    args = parser.parse_args()
    catalogue = load_services()
    out: dict[str, Any] = {"set": args.set, "services": len(catalogue), "languages": {}}
    for language in LANGUAGES:
        t0 = time.perf_counter()
        matcher = IntentMatcher(catalogue, language)
        build_ms = (time.perf_counter() - t0) * 1000
        rows = load_heldout(language, args.set)
        figures = evaluate(matcher, rows)
        figures["latency"] = latency(
            IntentMatcher(catalogue, language), [r["text"] for r in rows], args.repeat
        )
        figures["build_ms"] = round(build_ms, 1)
        figures["vocabulary"] = len(matcher.vocabulary)
        if not args.no_loo:
            figures["catalogue_leave_one_out"] = leave_one_out(catalogue, language)
        out["languages"][language] = figures
        lat = figures["latency"]
        print(
            f"{language} ({args.set}): top-1 {figures['top1']}/{figures['utterances']} "
            f"= {figures['top1_accuracy']:.1%}; confident and right {figures['confident_right']}; "
            f"decisions {figures['decisions']}"
        )
        print(
            f"    misses {figures['utterances'] - figures['top1']}: "
            f"safe (not committed) {figures['misses_safe']} {figures['misses_by_decision']}, "
            f"WRONG confident {figures['misses_wrong_confident']} "
            f"{figures['wrong_confident_examples']}"
        )
        print(
            f"    latency median {lat['median_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms "
            f"(first sight: median {lat['cold_median_ms']:.3f}, p95 {lat['cold_p95_ms']:.3f}); "
            f"build {figures['build_ms']} ms, {figures['vocabulary']} terms"
        )
        if args.show_misses:
            for miss in figures["misses"]:
                top = miss["special"] or ", ".join(f"{c} {s}" for c, s in miss["candidates"])
                print(
                    f"      MISS [{miss['decision']}] want {miss['expected']}; "
                    f"got {top or '-'}: {miss['text']}"
                )
        if not args.no_loo:
            loo = figures["catalogue_leave_one_out"]
            print(
                f"    catalogue phrases, leave-one-out: top-1 {loo['top1_accuracy']:.1%} "
                f"of {loo['utterances']}, wrong confident {loo['misses_wrong_confident']}"
            )
    name = "bench_intents" if args.set == "unseen" else f"bench_intents_{args.set}"
    path = write_result(name, out)
    print(f"written {path}")


if __name__ == "__main__":
    main()
