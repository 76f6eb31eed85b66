"""A resident's speech turns over AudioSocket: prompts out, caller audio to the recogniser.

The AGI session starts `AudioSocket(<uuid>,host:port)` in its own task (the EXEC returns only
when the audio session ends), drives the pure speech dialog turn by turn here, then hangs the
audio session up so the AGI session goes on (keypad menu, queue, goodbye). Anything that goes
wrong with speech (no worker, no session, a dead worker) becomes `SpeechFailed`: the dialog
then hands the resident to the keypad menu; the call itself is never at risk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from cases.services import ServiceCatalogue
from ivr.audiosocket import Audio, Dtmf
from ivr.audiosocket_server import AudioSession, AudioSocketServer
from ivr.intents import IntentMatcher, grammar_phrases
from ivr.speech import SpeechError, SpeechPool, SpeechSession
from ivr.speech_core import Final, Partial
from ivr.speech_dialog import (
    Event,
    Heard,
    Listen,
    Mode,
    Pressed,
    ServiceInfo,
    Silence,
    SpeechDialog,
    SpeechFailed,
)
from ivr.text_folding import STEMMERS
from pbx.fastagi import AgiChannel, AgiError, AgiHangup

log = structlog.get_logger(__name__)

KeyConsumed = Callable[[], None]  # tells the session a key was taken here


class PromptAudio:
    """Rendered prompt WAVs as raw PCM for AudioSocket, read once and kept in memory."""

    def __init__(self, sounds_dir: Path) -> None:
        self._dir = sounds_dir
        self._cache: dict[tuple[str, str], bytes] = {}

    def pcm(self, language: str, name: str) -> bytes:
        key = (language, name)
        if key not in self._cache:
            path = self._dir / language / f"{name}.wav"
            try:
                with wave.open(str(path), "rb") as wav:
                    self._cache[key] = wav.readframes(wav.getnframes())
            except (OSError, wave.Error) as exc:
                log.error("prompt_unreadable", prompt=name, language=language, error=str(exc))
                self._cache[key] = b""  # the turn goes on without it
        return self._cache[key]


@dataclass
class SpeechSettings:
    listen_seconds: float = 6.0  # after the prompts, how long to wait for speech or a key
    session_timeout: float = 5.0  # for Asterisk to connect the AudioSocket
    # Grammar mode even for the open question: for test packs whose model cannot do free
    # speech reliably; production packs use the full model there.
    open_question_grammar: bool = False


class SpeechPath:
    """What the call session needs to run speech turns: audio link, recognisers, prompts."""

    def __init__(
        self,
        *,
        audiosocket: AudioSocketServer,
        pool: SpeechPool,
        prompts: PromptAudio,
        services: ServiceCatalogue,
        settings: SpeechSettings,
    ) -> None:
        self.audiosocket = audiosocket
        self.pool = pool
        self.prompts = prompts
        self.services = services
        self.settings = settings
        self._matchers: dict[str, IntentMatcher] = {}
        self._phrases: dict[str, tuple[str, ...]] = {}

    def speaks(self, language: str) -> bool:
        return language in self.pool.available_languages()

    def build_matchers(self) -> None:
        """Build the matcher of every language spoken, before calls: about 0.15 s each."""
        for language in sorted(self.pool.available_languages() & STEMMERS.keys()):
            self.matcher(language)

    def matcher(self, language: str) -> IntentMatcher:
        if language not in self._matchers:
            self._matchers[language] = IntentMatcher(self.services, language)
        return self._matchers[language]

    def open_phrases(self, language: str) -> tuple[str, ...]:
        if language not in self._phrases:
            self._phrases[language] = tuple(grammar_phrases(language, self.services))
        return self._phrases[language]

    def dialog(self) -> SpeechDialog:
        def info(code: str) -> ServiceInfo:
            service = self.services.services[code]
            return ServiceInfo(code, service.group, service.is_information)

        return SpeechDialog(lambda lang, text: self.matcher(lang).match(text), info)

    async def converse(
        self, channel: AgiChannel, call_id: str, dialog: SpeechDialog, on_key: KeyConsumed
    ) -> object:
        """Run the dialog to its outcome (SpeechRoute, UseKeypad or Goodbye)."""
        session_id = uuid.uuid4()
        address = f"127.0.0.1:{self.audiosocket.port}"
        link = asyncio.ensure_future(
            channel.exec("AudioSocket", str(session_id), address, timeout=None)
        )
        try:
            session = await self.audiosocket.wait_session(session_id, self.settings.session_timeout)
        except TimeoutError:
            log.error("audiosocket_not_connected", session=str(session_id))
            link.cancel()
            return dialog.on_event(SpeechFailed())
        frames: asyncio.Queue[Audio | Dtmf | None] = asyncio.Queue()
        pump = asyncio.ensure_future(_pump(session, frames))
        try:
            step: object = dialog.start()
            while isinstance(step, Listen):
                if not self.speaks(step.language):  # a language without a model: keys only
                    log.warning("speech_language_keypad_only", language=step.language)
                    step = dialog.on_event(SpeechFailed())
                    break
                event = await self._turn(session, frames, call_id, step)
                if isinstance(event, Pressed):
                    on_key()
                log.info("speech_turn", step=step.step.value, heard=_describe(event))
                step = dialog.on_event(event)
            return step
        finally:
            await session.hangup()
            pump.cancel()
            with contextlib.suppress(AgiHangup, AgiError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(link, timeout=5)
            if link.done() and not link.cancelled() and isinstance(link.exception(), AgiHangup):
                raise AgiHangup("caller hung up during speech")

    async def _turn(
        self,
        session: AudioSession,
        frames: asyncio.Queue[Audio | Dtmf | None],
        call_id: str,
        step: Listen,
    ) -> Event:
        phrases: tuple[str, ...] | None = step.phrases or None
        if step.mode is Mode.FREE:
            phrases = (
                self.open_phrases(step.language) if self.settings.open_question_grammar else None
            )
        recogniser: SpeechSession | None = None
        if phrases is None or self._usable(step.language, phrases):
            try:
                recogniser = await self.pool.open(call_id, step.language, phrases=phrases)
            except SpeechError as exc:
                log.warning("speech_unavailable", error=str(exc))
                return SpeechFailed()
        else:
            # The model knows none of this question's words: keys only, for this turn.
            log.info("speech_turn_keys_only", step=step.step.value, language=step.language)
        prompts_done = asyncio.Event()
        playing = asyncio.ensure_future(self._play(session, step, prompts_done))
        try:
            return await self._listen(
                session,
                frames,
                recogniser,
                prompts_done,
                min(step.listen_seconds, self.settings.listen_seconds),
            )
        except SpeechError as exc:
            log.warning("speech_unavailable", error=str(exc))
            return SpeechFailed()
        finally:
            session.stop_audio()
            playing.cancel()
            if recogniser is not None:
                with contextlib.suppress(SpeechError):
                    await recogniser.close()

    def _usable(self, language: str, phrases: tuple[str, ...]) -> bool:
        """Whether any phrase survived the start-up vocabulary check of this language's model."""
        dropped = self.pool.dropped_phrases.get(language, {})
        return any(phrase not in dropped for phrase in phrases)

    async def _play(self, session: AudioSession, step: Listen, prompts_done: asyncio.Event) -> None:
        for name in step.prompts:
            await session.send_audio(self.prompts.pcm(step.language, name))
        prompts_done.set()
        # Then silence while listening: Asterisk ends an AudioSocket with no audio either way for
        # 2 s, and a phone with silence suppression sends none while the resident thinks.
        await session.send_audio(bytes(int(16000 * (self.settings.listen_seconds + 2))))

    async def _listen(
        self,
        session: AudioSession,
        frames: asyncio.Queue[Audio | Dtmf | None],
        recogniser: SpeechSession | None,
        prompts_done: asyncio.Event,
        listen_seconds: float,
    ) -> Event:
        speaking = False
        deadline: float | None = None
        while True:
            if deadline is None and prompts_done.is_set():
                deadline = time.monotonic() + listen_seconds
            wait = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            if deadline is not None and wait == 0.0 and not speaking:
                return Silence()
            try:
                frame = await asyncio.wait_for(frames.get(), timeout=max(wait, 0.02))
            except TimeoutError:
                continue
            if frame is None:
                raise AgiHangup("the audio session ended")
            if isinstance(frame, Dtmf):
                session.stop_audio()
                return Pressed(frame.digit)
            if recogniser is None:
                continue
            heard = await recogniser.feed(frame.pcm)
            if isinstance(heard, Partial) and heard.text and not speaking:
                speaking = True
                session.stop_audio()  # barge-in: the resident talks over the prompt
            if isinstance(heard, Final):
                text = heard.result.phrase or heard.result.text
                if text:
                    return Heard(text)
                speaking = False  # noise ended an "utterance" with no words: keep listening


async def _pump(session: AudioSession, into: asyncio.Queue[Audio | Dtmf | None]) -> None:
    """Caller frames into a queue the turns can wait on with timeouts (an async generator
    would be closed by the first timed-out wait); None marks the end of the session."""
    try:
        async for frame in session.frames():
            into.put_nowait(frame)
    finally:
        into.put_nowait(None)


def _describe(event: Event) -> str:
    if isinstance(event, Heard):
        return f"said: {event.text}"
    if isinstance(event, Pressed):
        return f"key {event.digit}"
    return type(event).__name__.lower()


def services_with_phrases(
    services: ServiceCatalogue, extra: Mapping[str, Mapping[str, list[str]]]
) -> ServiceCatalogue:
    """The catalogue with extra phrases per service and language (a language pack's own)."""
    changed = dict(services.services)
    for code, by_language in extra.items():
        service = changed[code]
        phrases = dict(service.phrases)
        for language, added in by_language.items():
            phrases[language] = (*phrases.get(language, ()), *added)
        changed[code] = replace(service, phrases=phrases)
    return replace(services, services=changed)
