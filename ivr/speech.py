"""Speech recognition for calls: Vosk in worker processes, an asyncio API for the IVR.

Vosk is native code (Kaldi through cffi): a crash or a hang there must not take down the
process that holds the calls, the AMI link and the ACD. So every recognizer lives in a worker
process (multiprocessing, spawn context) that loads each language's model once and keeps one
``KaldiRecognizer`` per call. The call-handling process talks to workers over pipes, with a
bounded outgoing queue and a timeout on every request. A worker that dies is replaced; the
calls it held get ``SpeechUnavailable`` (the IVR falls back to the keypad), new calls go on.

    pool = SpeechPool({"pl": Path("/srv/vosk/pl")}, workers=2)
    await pool.start(phrases={"pl": ["drogi", "oświetlenie"]})
    session = await pool.open(call_id, "pl", phrases=["drogi", "oświetlenie"])
    while (event := await session.feed(frame)) is not Final: ...
    result = await session.finish(); await session.close()

Audio is 8 kHz signed 16-bit little-endian mono (AudioSocket's slin). Models whose mfcc.conf
lacks ``--allow-upsample=true`` get the audio upsampled in the worker.

This module is the call-handling side (the pool, its worker handles, the sessions). The worker
process itself is ivr/speech_worker.py; results, endpointing and phrase helpers, shared by
both, are ivr/speech_core.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ivr.languages import model_problem
from ivr.speech_core import (
    BYTES_PER_MS,
    EndpointConfig,
    Final,
    Partial,
    Result,
    merge_results,
    normalise_phrase,
    split_phrases,
)
from ivr.speech_worker import worker_main

log = structlog.get_logger(__name__)


class SpeechError(RuntimeError):
    pass


class SpeechUnavailable(SpeechError):
    """Speech cannot serve this call (worker died or hung, overload, no model): use the keypad."""


class SpeechModelError(SpeechError):
    """A configured model could not be loaded (raised by ``start(strict=True)``)."""


class _Worker:
    """Parent-side handle of one worker process: its pipe, reader and writer threads, and the
    requests waiting for an answer."""

    def __init__(
        self,
        pool: SpeechPool,
        index: int,
        models: dict[str, Path],
        queue_size: int,
    ) -> None:
        self.pool = pool
        self.index = index
        self.models = dict(models)
        self.loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main,
            args=(child, {k: str(v) for k, v in models.items()}, pool.endpoint, pool.resample),
            name=f"cityline-speech-{index}",
            daemon=True,
        )
        self.ready: asyncio.Future[tuple[list[str], dict[str, str]]] = self.loop.create_future()
        self.loading: str | None = None
        self.languages: frozenset[str] = frozenset()
        self.sessions: set[str] = set()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        self.started_at = time.monotonic()
        self.last_reply = time.monotonic()
        self.rss_after_load = 0
        self._ids = itertools.count(1)
        self._out: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=queue_size)
        self.process.start()
        child.close()
        self.pid = self.process.pid
        threading.Thread(target=self._read, name=f"speech-read-{index}", daemon=True).start()
        threading.Thread(target=self._write, name=f"speech-write-{index}", daemon=True).start()

    # threads: block on the pipe so the event loop never does
    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self._post(self._on_exit)
                return
            except Exception as exc:  # unpicklable reply: treat the worker as broken
                self._post(self._on_exit, f"bad message: {exc}")
                return
            self._post(self._on_message, message)

    def _write(self) -> None:
        while (message := self._out.get()) is not None:
            try:
                self.conn.send(message)
            except (OSError, ValueError):
                return  # the reader sees the end and reports it

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            self.loop.call_soon_threadsafe(fn, *args)

    # event loop
    def _on_message(self, message: tuple[Any, ...]) -> None:
        self.last_reply = time.monotonic()
        kind = message[0]
        if kind == "loading":
            self.loading = message[1]
        elif kind == "ready":
            _, languages, errors, rss = message
            self.loading = None
            self.languages = frozenset(languages)
            self.rss_after_load = rss
            if not self.ready.done():
                self.ready.set_result((languages, errors))
        elif kind == "reply":
            _, rid, ok, payload = message
            fut = self.pending.pop(rid, None)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(payload)
                else:
                    fut.set_exception(SpeechError(payload))

    def _on_exit(self, why: str | None = None) -> None:
        if not self.alive:
            return
        self.alive = False
        self.process.join(timeout=0)  # reap if already gone; never block the loop
        code = self.process.exitcode
        reason = why or f"speech worker {self.pid} exited (code {code})"
        error = SpeechUnavailable(reason)
        if not self.ready.done():
            self.ready.set_exception(error)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(error)
        self.pending.clear()
        with contextlib.suppress(queue.Full):
            self._out.put_nowait(None)  # ends the writer thread
        self.pool._worker_exited(self, reason)

    async def request(self, kind: str, *args: Any, timeout: float) -> Any:
        if not self.alive:
            raise SpeechUnavailable(f"speech worker {self.pid} is gone")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = self.loop.create_future()
        try:
            self._out.put_nowait((kind, rid, *args))
        except queue.Full:
            raise SpeechUnavailable(f"speech worker {self.pid} is overloaded") from None
        self.pending[rid] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            stalled = time.monotonic() - self.last_reply
            if stalled >= self.pool.hang_timeout:
                self.kill(f"speech worker {self.pid} silent for {stalled:.1f}s")
            raise SpeechUnavailable(f"speech worker {self.pid}: {kind} timed out") from None
        finally:
            self.pending.pop(rid, None)

    def kill(self, why: str) -> None:
        if self.alive:
            log.warning("speech_worker_kill", pid=self.pid, reason=why)
            with contextlib.suppress(ProcessLookupError, AttributeError):
                self.process.kill()

    async def stop(self, timeout: float = 5.0) -> None:
        if self.alive:
            with contextlib.suppress(queue.Full):
                self._out.put_nowait(("stop", 0))
        await asyncio.to_thread(self.process.join, timeout)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, timeout)
        self.alive = False
        with contextlib.suppress(queue.Full):
            self._out.put_nowait(None)
        self.conn.close()


class SpeechSession:
    """One call's recognizer in a worker. Not for concurrent use: await each feed."""

    def __init__(
        self, pool: SpeechPool, worker: _Worker, call_id: str, sid: str, language: str
    ) -> None:
        self.pool = pool
        self.call_id = call_id
        self.language = language
        self._worker = worker
        self._sid = sid
        self._buffer = bytearray()
        self._lost: str | None = None
        self._closed = False

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid

    def _lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            log.warning("speech_lost", call_id=self.call_id, reason=why)

    def _check(self) -> None:
        if self._closed:
            raise SpeechError("speech session is closed")
        if self._lost is not None:
            raise SpeechUnavailable(self._lost)
        if not self._worker.alive:
            self._lose(f"speech worker {self._worker.pid} died")
            raise SpeechUnavailable(self._lost)

    async def _call(self, kind: str, *args: Any) -> Any:
        try:
            return await self._worker.request(kind, self._sid, *args, timeout=self.pool.timeout)
        except SpeechUnavailable as exc:
            self._lose(str(exc))
            raise

    async def _send(self, pcm: bytes) -> tuple[Any, ...] | None:
        reply = await self._call("feed", pcm)
        return tuple(reply) if reply is not None else None

    async def feed(self, pcm: bytes) -> Partial | Final | None:
        """Add 8 kHz s16le audio. Returns a Final when the utterance ended (Vosk's endpoint or
        ours), a Partial when the running text changed, else None. Audio is sent to the worker
        in hops of ``pool.hop_ms``; audio after a Final stays buffered for the next call."""
        self._check()
        self._buffer += pcm
        partial: Partial | None = None
        while len(self._buffer) >= self.pool.hop_bytes:
            n = min(len(self._buffer), self.pool.max_hop_bytes)
            n -= n % 2  # whole samples only; an odd byte waits for its other half
            chunk = bytes(self._buffer[:n])
            del self._buffer[:n]
            reply = await self._send(chunk)
            if reply is None:
                continue
            if reply[0] == "final":
                return Final(reply[1], reply[2])
            partial = Partial(reply[1])
        return partial

    async def finish(self) -> Result:
        """Decode what is buffered and return the result of the utterance in progress (texts of
        utterances that ended inside the buffered audio are joined in)."""
        self._check()
        results: list[Result] = []
        while len(self._buffer) >= 2:
            n = min(len(self._buffer), self.pool.max_hop_bytes)
            n -= n % 2
            chunk = bytes(self._buffer[:n])
            del self._buffer[:n]
            reply = await self._send(chunk)
            if reply is not None and reply[0] == "final":
                results.append(reply[1])
        self._buffer.clear()  # a lone trailing byte is half a sample: drop it
        results.append(await self._call("finish"))
        return merge_results(results)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool._forget(self._worker, self._sid)
        if self._worker.alive:  # also after a timeout: the worker still holds the recognizer
            with contextlib.suppress(SpeechError):
                await self._worker.request("close", self._sid, timeout=self.pool.timeout)

    async def __aenter__(self) -> SpeechSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass
class _PoolState:
    errors: dict[str, str] = field(default_factory=dict)  # language -> why it is keypad-only
    dropped: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    restarts: int = 0


class SpeechPool:
    """Worker processes that run Vosk for the calls of this process.

    Every worker loads every available language's model once (~500 MB each for the small
    models). ``max_calls_per_worker`` bounds the recognizers a worker holds at once; opening a
    call when every worker is full raises ``SpeechUnavailable``.
    """

    def __init__(
        self,
        model_paths: Mapping[str, Path],
        *,
        workers: int = 2,
        max_calls_per_worker: int = 8,
        timeout: float = 5.0,
        hang_timeout: float = 15.0,
        load_timeout: float = 120.0,
        hop_ms: int = 100,
        max_hop_ms: int = 1000,
        endpoint: EndpointConfig | None = None,
        resample: bool | None = None,
    ) -> None:
        if workers < 1 or max_calls_per_worker < 1:
            raise ValueError("workers and max_calls_per_worker must be at least 1")
        self.model_paths = {lang: Path(p) for lang, p in model_paths.items()}
        self.workers = workers
        self.max_calls_per_worker = max_calls_per_worker
        self.timeout = timeout
        self.hang_timeout = hang_timeout
        self.load_timeout = load_timeout
        self.hop_bytes = hop_ms * BYTES_PER_MS
        self.max_hop_bytes = max(max_hop_ms, hop_ms) * BYTES_PER_MS
        self.endpoint = endpoint or EndpointConfig()
        self.resample = resample  # None: only models that cannot upsample 8 kHz; True: always
        self._state = _PoolState()
        self._workers: list[_Worker] = []
        self._languages: set[str] = set()
        self._sids = itertools.count(1)
        self._replacing: set[asyncio.Task[None]] = set()
        self._reported: set[tuple[str, str]] = set()
        self._closing = False

    # --- start-up ---
    @property
    def errors(self) -> dict[str, str]:
        """language -> why it runs keypad-only (missing or broken model)."""
        return dict(self._state.errors)

    @property
    def dropped_phrases(self) -> dict[str, dict[str, list[str]]]:
        """language -> {phrase dropped from grammars: its words the model does not know}."""
        return {k: dict(v) for k, v in self._state.dropped.items()}

    @property
    def restarts(self) -> int:
        return self._state.restarts

    def available_languages(self) -> frozenset[str]:
        return frozenset(self._languages)

    def _fail_language(self, language: str, why: str) -> None:
        path = self.model_paths.get(language)
        message = f"speech model for language {language!r} at {path} {why}"
        self._state.errors[language] = message
        self._languages.discard(language)
        log.error(
            "speech_model_unusable",
            language=language,
            path=str(path),
            reason=why,
            fallback="keypad-only",
        )

    async def start(
        self, *, phrases: Mapping[str, Sequence[str]] | None = None, strict: bool = False
    ) -> None:
        """Check model paths, start the workers (models load in parallel), check phrase lists.

        A language whose model is missing or broken is logged with its path and runs keypad-only
        (``available_languages()`` leaves it out); ``strict=True`` raises instead.
        """
        candidates: dict[str, Path] = {}
        for language, path in self.model_paths.items():
            problem = model_problem(path)
            if problem:
                self._fail_language(language, problem)
            else:
                candidates[language] = path
        self._languages = set(candidates)
        if candidates:
            await asyncio.gather(*(self._spawn(i, candidates) for i in range(self.workers)))
        for language in sorted(self._languages):
            if not any(language in w.languages for w in self._workers):
                self._fail_language(language, "has no speech worker (none could start)")
        if strict and self._state.errors:
            await self.close()
            raise SpeechModelError("; ".join(self._state.errors.values()))
        for language, phrase_list in (phrases or {}).items():
            if language in self._languages:
                await self.check_phrases(language, phrase_list)
        log.info(
            "speech_ready",
            languages=sorted(self._languages),
            workers=len(self._workers),
            keypad_only=sorted(self._state.errors),
        )

    async def _spawn(self, index: int, models: dict[str, Path]) -> _Worker | None:
        """Start one worker with the still-usable models; a model that crashes the loader is
        blamed and the worker retried without it."""
        models = {k: v for k, v in models.items() if k in self._languages}
        while models and not self._closing:
            worker = _Worker(self, index, models, queue_size=4 * self.max_calls_per_worker + 16)
            try:
                _loaded, errors = await asyncio.wait_for(worker.ready, self.load_timeout)
            except (SpeechUnavailable, TimeoutError) as exc:
                blamed = worker.loading
                worker.kill("did not finish loading")
                await worker.stop(timeout=2.0)
                if blamed is None:
                    log.error("speech_worker_start_failed", index=index, reason=str(exc))
                    return None
                self._fail_language(blamed, f"crashed or hung the model loader ({exc})")
                models.pop(blamed, None)
                continue
            for language, error in errors.items():
                self._fail_language(language, f"failed to load: {error}")
            worker.languages = frozenset(worker.languages & self._languages)
            self._workers.append(worker)
            log.info(
                "speech_worker_ready",
                pid=worker.pid,
                index=index,
                languages=sorted(worker.languages),
                rss_mb=worker.rss_after_load >> 20,
            )
            return worker
        return None

    async def check_phrases(self, language: str, phrases: Sequence[str]) -> list[str]:
        """Report (log + ``dropped_phrases``) the phrases with words the model does not know;
        returns the phrases kept. Those phrases are also dropped from every grammar built."""
        worker = self._pick(language, for_call=False)
        words = sorted({w for p in phrases for w in normalise_phrase(p).split()})
        missing = set(await worker.request("vocab", language, words, timeout=self.timeout))
        kept, dropped = split_phrases(phrases, lambda w: w not in missing)
        if dropped:
            self._state.dropped.setdefault(language, {}).update(dropped)
            self._reported.update((language, p) for p in dropped)
            log.warning(
                "speech_phrases_out_of_vocabulary",
                language=language,
                phrases={p: w for p, w in dropped.items()},
            )
        return kept

    # --- calls ---
    def _pick(self, language: str, *, for_call: bool = True) -> _Worker:
        if language not in self._languages:
            why = self._state.errors.get(language, f"no speech model for language {language!r}")
            raise SpeechUnavailable(why)
        serving = [w for w in self._workers if w.alive and language in w.languages]
        if for_call:
            serving = [w for w in serving if len(w.sessions) < self.max_calls_per_worker]
        if not serving:
            raise SpeechUnavailable(f"no speech worker free for {language!r}")
        return min(serving, key=lambda w: len(w.sessions))

    async def open(
        self, call_id: str, language: str, phrases: Sequence[str] | None = None
    ) -> SpeechSession:
        """A recognizer for one call: grammar mode with ``phrases``, free-form without."""
        worker = self._pick(language)
        sid = f"{call_id}#{next(self._sids)}"
        worker.sessions.add(sid)  # counted at once so concurrent opens spread over workers
        try:
            dropped = await worker.request(
                "open",
                sid,
                language,
                list(phrases) if phrases is not None else None,
                timeout=self.timeout,
            )
        except SpeechUnavailable:
            worker.sessions.discard(sid)
            raise
        except BaseException as exc:
            worker.sessions.discard(sid)
            if isinstance(exc, SpeechError):  # no recognizer for this call: keypad it is
                raise SpeechUnavailable(str(exc)) from exc
            raise
        new = {p: w for p, w in dropped.items() if (language, p) not in self._reported}
        if new:
            self._reported.update((language, p) for p in new)
            self._state.dropped.setdefault(language, {}).update(new)
            log.warning("speech_phrases_out_of_vocabulary", language=language, phrases=new)
        return SpeechSession(self, worker, call_id, sid, language)

    def _forget(self, worker: _Worker, sid: str) -> None:
        worker.sessions.discard(sid)

    def _worker_exited(self, worker: _Worker, reason: str) -> None:
        if worker not in self._workers:
            return  # died while loading: _spawn handles it
        self._workers.remove(worker)
        held = len(worker.sessions)
        worker.sessions.clear()
        log.error("speech_worker_died", pid=worker.pid, reason=reason, calls_lost=held)
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._replace(worker))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, dead: _Worker) -> None:
        # back off when workers die young, so a model that crashes on use cannot spin the CPU
        lived = time.monotonic() - dead.started_at
        self._state.restarts += 1
        if lived < 10.0:
            await asyncio.sleep(min(30.0, 0.5 * 2 ** min(self._state.restarts, 6)))
        with contextlib.suppress(Exception):
            await asyncio.to_thread(dead.process.join, 1.0)
            dead.conn.close()
        await self._spawn(dead.index, dict(dead.models))

    async def wait_workers(self, timeout: float = 60.0) -> None:
        """Until every worker slot is filled again (tests, and a health check after a crash)."""
        deadline = time.monotonic() + timeout
        while len([w for w in self._workers if w.alive]) < self.workers or self._replacing:
            if time.monotonic() > deadline:
                raise TimeoutError("speech workers not back in time")
            await asyncio.sleep(0.05)

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.alive and w.pid is not None]

    async def stats(self) -> list[dict[str, Any]]:
        """Per worker: pid, RSS in bytes, recognizers held; plus RSS right after model load."""
        out = []
        for w in list(self._workers):
            with contextlib.suppress(SpeechError):
                s = await w.request("stats", timeout=self.timeout)
                out.append({**s, "rss_after_load": w.rss_after_load})
        return out

    async def close(self) -> None:
        self._closing = True
        for task in list(self._replacing):
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        workers, self._workers = self._workers, []
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    async def __aenter__(self) -> SpeechPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
