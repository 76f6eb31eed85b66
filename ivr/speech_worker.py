"""The recogniser process: loads each language's Vosk model once and serves one request at a
time over a pipe from the parent (ivr/speech.py), one ``KaldiRecognizer`` per call.

Started with multiprocessing's spawn context, so ``worker_main`` must stay importable from
here. Vosk is imported only in this process: a crash or hang in native code stays here.
"""

from __future__ import annotations

import json
import multiprocessing.connection
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.languages import model_sample_rate
from ivr.speech_core import (
    SAMPLE_RATE,
    UNK,
    EndpointConfig,
    Endpointer,
    Upsampler,
    normalise_phrase,
    parse_vosk_result,
    split_phrases,
)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@dataclass
class _Call:
    recognizer: Any
    endpointer: Endpointer
    upsample: Upsampler | None
    phrases: list[str] | None
    last_partial: str = ""


def worker_main(
    conn: multiprocessing.connection.Connection,
    models: dict[str, str],
    endpoint: EndpointConfig,
    resample: bool | None = None,
) -> None:
    """Worker process: load each model once, then serve requests one at a time."""
    import signal

    import vosk

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    vosk.SetLogLevel(-1)
    loaded: dict[str, Any] = {}
    rates: dict[str, int] = {}  # rate the recognizer is created with
    errors: dict[str, str] = {}
    for language, path in models.items():
        conn.send(("loading", language))  # if Kaldi aborts now, the parent knows which model
        try:
            loaded[language] = vosk.Model(path)
        except Exception as exc:
            errors[language] = f"{type(exc).__name__}: {exc}"
            continue
        rate, allow_upsample = model_sample_rate(Path(path))
        kaldi_takes_8k = allow_upsample or rate <= SAMPLE_RATE
        if resample is True:
            rates[language] = max(rate, 2 * SAMPLE_RATE)
        else:
            rates[language] = SAMPLE_RATE if kaldi_takes_8k else rate
    conn.send(("ready", sorted(loaded), errors, _rss_bytes()))

    calls: dict[str, _Call] = {}
    vocab: dict[tuple[str, str], bool] = {}

    def has_word(language: str, word: str) -> bool:
        key = (language, word)
        if key not in vocab:
            vocab[key] = loaded[language].vosk_model_find_word(word) >= 0
        return vocab[key]

    def handle(kind: str, args: tuple[Any, ...]) -> Any:
        if kind == "open":
            sid, language, phrases = args
            model = loaded[language]
            dropped: dict[str, list[str]] = {}
            grammar: list[str] | None = None
            if phrases is not None:
                kept, dropped = split_phrases(phrases, lambda w: has_word(language, w))
                grammar = [normalise_phrase(p) for p in kept]
                if not grammar:
                    raise ValueError(f"no phrase of {phrases!r} is in the model's vocabulary")
                if has_word(language, UNK):
                    grammar.append(UNK)  # out-of-grammar speech lands on [unk], not a phrase
            rate = rates[language]
            if grammar is not None:
                # ensure_ascii=False: Vosk's grammar parser does not decode \\uXXXX escapes, so
                # every non-ASCII word would be "missing in vocabulary".
                rec = vosk.KaldiRecognizer(model, rate, json.dumps(grammar, ensure_ascii=False))
            else:
                rec = vosk.KaldiRecognizer(model, rate)
            rec.SetWords(True)
            up = Upsampler(rate // SAMPLE_RATE) if rate != SAMPLE_RATE else None
            kept_phrases = [p for p in phrases if p not in dropped] if phrases is not None else None
            calls[sid] = _Call(rec, Endpointer(endpoint), up, kept_phrases)
            return dropped
        if kind == "feed":
            sid, pcm = args
            call = calls[sid]
            vosk_final = call.recognizer.AcceptWaveform(
                call.upsample(pcm) if call.upsample else pcm
            )
            had_speech = call.endpointer.speech_ms > 0
            ended = call.endpointer.push(pcm)
            if vosk_final:
                result = parse_vosk_result(call.recognizer.Result(), call.phrases)
                call.endpointer.reset()
                call.last_partial = ""
                if result.text or had_speech or ended:
                    return ("final", result, "vosk")
                return None  # Vosk's own rule for long leading silence: nothing was said
            if ended:
                result = parse_vosk_result(call.recognizer.FinalResult(), call.phrases)
                call.last_partial = ""
                return ("final", result, ended)
            partial = json.loads(call.recognizer.PartialResult()).get("partial", "")
            partial = " ".join(partial.replace(UNK, "").split())
            if partial and partial != call.last_partial:
                call.last_partial = partial
                return ("partial", partial)
            return None
        if kind == "finish":
            (sid,) = args
            call = calls[sid]
            call.endpointer.reset()
            call.last_partial = ""
            return parse_vosk_result(call.recognizer.FinalResult(), call.phrases)
        if kind == "close":
            (sid,) = args
            calls.pop(sid, None)  # frees the recognizer (its __del__ calls vosk_recognizer_free)
            return None
        if kind == "vocab":
            language, words = args
            return [w for w in words if not has_word(language, w)]
        if kind == "stats":
            return {"pid": os.getpid(), "rss": _rss_bytes(), "calls": len(calls)}
        raise ValueError(f"unknown request {kind!r}")

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # the parent is gone: never outlive it
        kind, rid, *args = message
        if kind == "stop":
            return
        try:
            reply = ("reply", rid, True, handle(kind, tuple(args)))
        except Exception as exc:
            reply = ("reply", rid, False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return
