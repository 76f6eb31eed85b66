"""Speech results and audio handling: pure, no Vosk, no processes, no clock.

Audio is 8 kHz signed 16-bit little-endian mono (AudioSocket's slin). The energy endpointer
and the upsampler run inside the recogniser process (ivr/speech_worker.py); the result types
and phrase helpers are shared by it and by the pool's parent side (ivr/speech.py).
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SAMPLE_RATE = 8000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # 16-bit mono
UNK = "[unk]"


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds since the session's first audio
    end: float
    conf: float


@dataclass(frozen=True)
class Result:
    text: str
    confidence: float  # mean word confidence, 0.0 for no words
    words: tuple[Word, ...] = ()
    phrase: str | None = None  # grammar mode: the allowed phrase nearest to the text


@dataclass(frozen=True)
class Partial:
    text: str


@dataclass(frozen=True)
class Final:
    result: Result
    reason: str  # "vosk" (its own endpoint rules), "silence" or "max_length" (our endpointer)


EMPTY = Result("", 0.0)


@dataclass(frozen=True)
class EndpointConfig:
    silence_ms: int = 700  # this much quiet after speech ends the utterance
    max_utterance_ms: int = 15_000  # bounded: a caller who never stops still gets a result
    min_speech_ms: int = 100  # clicks and short bursts are not "speech started"
    threshold: int = 400  # frame RMS on the s16 scale (~ -38 dBFS) that counts as speech
    frame_ms: int = 20


class Endpointer:
    """Energy endpointing on 8 kHz s16le: which frames are speech, and when an utterance ends.

    Pure and clock-free: time is the amount of audio pushed. ``push`` returns the reason the
    utterance ended ("silence" or "max_length") or None; after an end it starts afresh.
    """

    def __init__(self, config: EndpointConfig | None = None, rate: int = SAMPLE_RATE) -> None:
        self.config = config or EndpointConfig()
        self._frame_bytes = rate * 2 * self.config.frame_ms // 1000
        self._threshold_sq = self.config.threshold**2 * (self._frame_bytes // 2)
        self._rest = b""
        self.reset()

    def reset(self) -> None:
        self.speech_ms = 0  # speech frames seen in this utterance
        self.trailing_silence_ms = 0
        self.utterance_ms = 0  # audio since speech started

    @property
    def in_speech(self) -> bool:
        return self.speech_ms >= self.config.min_speech_ms

    def push(self, pcm: bytes) -> str | None:
        data = self._rest + pcm
        usable = len(data) - len(data) % self._frame_bytes
        self._rest = data[usable:]
        ended: str | None = None
        step = self.config.frame_ms
        for offset in range(0, usable, self._frame_bytes):
            frame = array("h", data[offset : offset + self._frame_bytes])
            if sys.byteorder == "big":
                frame.byteswap()
            loud = sum(map(operator.mul, frame, frame)) >= self._threshold_sq
            if loud:
                self.speech_ms += step
                self.trailing_silence_ms = 0
            elif self.speech_ms:
                self.trailing_silence_ms += step
            if self.speech_ms:
                self.utterance_ms += step
            if (
                ended is None
                and self.in_speech
                and self.trailing_silence_ms >= self.config.silence_ms
            ):
                ended = "silence"
                self.reset()
            elif ended is None and self.utterance_ms >= self.config.max_utterance_ms:
                ended = "max_length"
                self.reset()
        return ended


class Upsampler:
    """Integer-factor upsampling of s16le with a windowed-sinc interpolator, continuous across
    chunks, for models whose mfcc.conf does not let Kaldi upsample 8 kHz audio itself.

    Linear interpolation is not enough: its spectral images above 4 kHz cost the model accuracy.
    Output lags the input by ``taps`` samples (1 ms at 8 kHz); those are held for the next chunk.
    """

    def __init__(self, factor: int, taps: int = 8, cutoff: float = 0.9) -> None:
        if factor < 2:
            raise ValueError("upsampling factor must be 2 or more")
        self.factor = factor
        self._taps = taps
        self._phases: list[list[float]] = []
        for p in range(1, factor):  # phase 0 is the input sample itself
            frac = p / factor
            weights = [_kernel(j - frac, taps, cutoff) for j in range(-taps + 1, taps + 1)]
            total = sum(weights)  # unit gain at DC
            self._phases.append([w / total for w in weights])
        self._history: list[int] = [0] * (taps - 1)

    def __call__(self, pcm: bytes) -> bytes:
        data = self._history + array("h", pcm).tolist()
        k = self._taps
        out = array("h")
        last = len(data) - k  # x[n + k] must exist
        for n in range(k - 1, last):
            out.append(data[n])
            window = data[n - k + 1 : n + k + 1]
            for weights in self._phases:
                y = round(sum(map(operator.mul, window, weights)))
                out.append(32767 if y > 32767 else -32768 if y < -32768 else y)
        self._history = data[max(last, k - 1) - k + 1 :]
        return out.tobytes()


def _kernel(t: float, taps: int, cutoff: float) -> float:
    """Hann-windowed sinc, in input-sample units."""
    if abs(t) >= taps:
        return 0.0
    x = math.pi * cutoff * t
    sinc = cutoff if x == 0 else cutoff * math.sin(x) / x
    return sinc * (0.5 + 0.5 * math.cos(math.pi * t / taps))


def normalise_phrase(phrase: str) -> str:
    return " ".join(phrase.lower().split())


def split_phrases(
    phrases: Sequence[str], has_word: Callable[[str], bool]
) -> tuple[list[str], dict[str, list[str]]]:
    """(phrases whose every word the model knows, {dropped phrase: its unknown words}).

    A phrase with an unknown word is dropped whole: Vosk would silently drop just the word and
    "street light" would become "street".
    """
    kept: list[str] = []
    dropped: dict[str, list[str]] = {}
    for phrase in phrases:
        words = normalise_phrase(phrase).split()
        unknown = [w for w in words if not has_word(w)]
        if unknown or not words:
            dropped[phrase] = unknown
        else:
            kept.append(phrase)
    return kept, dropped


def nearest_phrase(text: str, phrases: Sequence[str], cutoff: float = 0.5) -> str | None:
    """The allowed phrase closest to what Vosk heard (grammar mode is a bigram LM, not a strict
    grammar, so its text can be a mix of phrases)."""
    heard = normalise_phrase(text)
    if not heard:
        return None
    best, best_ratio = None, cutoff
    for phrase in phrases:
        ratio = difflib.SequenceMatcher(None, heard, normalise_phrase(phrase)).ratio()
        if ratio > best_ratio or (ratio == best_ratio and best is None):
            best, best_ratio = phrase, ratio
    return best


def parse_vosk_result(raw: str, phrases: Sequence[str] | None = None) -> Result:
    data = json.loads(raw)
    words = tuple(
        Word(w["word"], float(w["start"]), float(w["end"]), float(w["conf"]))
        for w in data.get("result", ())
        if w.get("word") != UNK
    )
    text = " ".join(w.word for w in words) if words else data.get("text", "").replace(UNK, "")
    text = " ".join(text.split())
    confidence = sum(w.conf for w in words) / len(words) if words else 0.0
    phrase = nearest_phrase(text, phrases) if phrases else None
    return Result(text, round(confidence, 4), words, phrase)


def merge_results(results: Sequence[Result]) -> Result:
    spoken = [r for r in results if r.text]
    if not spoken:
        return results[-1] if results else EMPTY
    if len(spoken) == 1:
        return spoken[0]
    words = tuple(w for r in spoken for w in r.words)
    confidence = sum(w.conf for w in words) / len(words) if words else 0.0
    return Result(" ".join(r.text for r in spoken), round(confidence, 4), words, spoken[-1].phrase)
