"""The CityLine process: starts every part in order, stops them in reverse.

PostgreSQL (configured DSN, or the embedded server) -> migrations -> Asterisk (system or
sandbox) with our config -> AMI -> ACD -> FastAGI -> HTTP. Tests start the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from acd import http as acd_http
from acd.callbacks import CallbackDialer
from acd.devices import WEB_PHONE_SUFFIX, DeviceTracker
from acd.engine import Engine
from acd.service import AcdService
from acd.service_level import ServiceLevelWindows
from acd.supervision import Supervision
from acd.wallboard_hub import WallboardHub
from acd.widening import policy_from_name
from agent_client import http as agent_http
from agent_client.accounts import Agent, AgentDirectory
from agent_client.desktops import DesktopHub
from agent_client.limits import LoginThrottle
from calls.store import CallStore
from cases import http as case_http
from cases import open311
from cases.catalogue import Catalogue, load_catalogue
from cases.services import load_services
from cases.services_store import sync_services
from cases.store import CaseStore
from cityline.config import PROJECT_DIR, Settings
from db.embedded import EmbeddedPostgres
from db.migrations import apply_migrations
from db.pool import create_pool, redact, utcnow
from ivr.audiosocket_server import AudioSocketServer
from ivr.intents import grammar_phrases
from ivr.languages import load_language_packs, model_paths
from ivr.prompts import render_prompts
from ivr.service import CallHandler, CallSettings
from ivr.speech import SpeechPool
from ivr.speech_call import PromptAudio, SpeechPath, SpeechSettings, services_with_phrases
from ivr.speech_dialog import LANGUAGE_WORDS, YES_NO
from pbx.ami import AmiLink
from pbx.asterisk import (
    AgentEndpoint,
    AsteriskInstance,
    AsteriskSettings,
    find_asterisk,
    reload_agents,
)
from pbx.fastagi import FastAgiServer
from pbx.queue_log import QueuedCall, queue_calls
from recordings.service import RecordingCollector
from web.app import build_app, page_routes
from web.kit import AUTHENTICATE

log = structlog.get_logger(__name__)

# The dial plan's last resort (asterisk-conf/queues.conf) when this process cannot take a call.
FALLBACK_QUEUE = "cityline-fallback"

SCHEMA_FILES = [
    ("cases", PROJECT_DIR / "cases" / "schema.sql"),
    ("agent_client", PROJECT_DIR / "agent_client" / "schema.sql"),
    ("services", PROJECT_DIR / "cases" / "services.sql"),
]


@dataclass
class Running:
    """What start() brought up, so stop() can take down exactly that, in reverse."""

    stops: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


class CityLine:
    def __init__(self, settings: Settings, *, catalogue: Catalogue | None = None) -> None:
        self.settings = settings
        self.catalogue = catalogue or load_catalogue()
        self.services = load_services(keypad=self.catalogue)
        self._running = Running()
        self.dsn = settings.database_dsn
        self.admin_token = ""
        self.asterisk: AsteriskInstance | None = None
        self.ami: AmiLink | None = None
        self.acd: AcdService | None = None
        self.wallboard: WallboardHub | None = None
        self.callbacks: CallbackDialer | None = None
        self.agi: FastAgiServer | None = None
        self.handler: CallHandler | None = None
        self.directory: AgentDirectory | None = None
        self.desktops: DesktopHub | None = None
        self.http_port = settings.http_port
        self.calls: CallStore | None = None
        self.pool: asyncpg.Pool | None = None
        self._fallback_events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        # Asterisk uniqueid -> (call id, entered the fallback queue at)
        self._fallback_calls: dict[str, tuple[uuid.UUID, datetime]] = {}

    # -- start ----------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = self._admin_token()
        pool = await self._start_database()
        self.calls = CallStore(pool)
        cases = CaseStore(pool, self.catalogue, self.services)
        self.directory = AgentDirectory(pool, self.catalogue, session_hours=s.session_hours)
        agents = await self.directory.load()
        await self._start_asterisk(agents)
        await self._start_acd(agents)
        await self._start_calls(cases)
        await self._start_http(cases)
        log.info("cityline_started", **self.addresses())

    async def _start_database(self) -> asyncpg.Pool:
        if not self.dsn:
            # Only one service runs per state directory (cityline.pid): a live server there
            # was left by a run of ours that died, and is ours to stop.
            embedded = EmbeddedPostgres(
                self.settings.state_dir / "postgres", take_over_leftover=True
            )
            self.dsn = await embedded.start()
            self._running.stops.append(embedded.stop)
            log.info("embedded_postgres_started", dsn=redact(self.dsn))
        pool = await create_pool(self.dsn)
        self._running.stops.append(pool.close)
        await apply_migrations(pool, SCHEMA_FILES)
        count = await sync_services(pool, self.services)  # the city catalogue file -> table
        log.info("service_catalogue_synced", services=count)
        self.pool = pool
        return pool

    async def _start_asterisk(self, agents: list[Agent]) -> None:
        s = self.settings
        self.asterisk = self._asterisk_instance()
        # A run of ours that died leaves its Asterisk serving residents (fallback queue): we take
        # it over rather than cut those calls, unless it listens elsewhere than configured now.
        survivor = self.asterisk.survivor()
        adopted = survivor is not None and self.asterisk.adopt(survivor)
        if survivor is not None and not adopted:
            await self.asterisk.stop_survivor(survivor)
        if not adopted:
            self.asterisk.render_config()
        self.asterisk.write_agents([AgentEndpoint(a.sip_endpoint, a.sip_secret) for a in agents])
        await asyncio.to_thread(
            render_prompts, self.catalogue, s.cache_dir / "prompts", self.asterisk.sounds_dir
        )
        if not adopted:
            await self.asterisk.start()
        self._running.stops.append(self.asterisk.stop)

        ast = self.asterisk.settings
        self.ami = AmiLink("127.0.0.1", ast.ami_port, ast.ami_username, ast.ami_secret)
        await self.ami.start()
        self._running.stops.append(self.ami.stop)
        if adopted:
            await reload_agents(self.ami)  # agents created while we were gone

    async def _start_acd(self, agents: list[Agent]) -> None:
        s = self.settings
        stats = ServiceLevelWindows(target_seconds=s.answer_target_seconds)
        stats.start_day(_local_midnight())
        engine = Engine(
            widening=policy_from_name(s.widening),
            target_seconds=s.answer_target_seconds,
            wrap_up_seconds=s.wrap_up_seconds,
            announce_period=float(s.announce_period_seconds),
            overflow_limit=s.overflow_limit,
            stats=stats,
        )
        self.acd = AcdService(engine)
        for agent in agents:
            if agent.role == "agent":
                self.acd.upsert_agent(agent.name, agent.skills)
        await self.acd.start()
        self._running.stops.append(self.acd.stop)
        days = asyncio.create_task(_roll_days(stats), name="service-level-days")
        self._running.stops.append(lambda: _cancel(days))
        self.wallboard = WallboardHub(self.acd)
        await self.wallboard.start()
        self._running.stops.append(self.wallboard.stop)

    async def _start_calls(self, cases: CaseStore) -> None:
        """Everything a resident's call goes through, from the FastAGI port to the agent."""
        s = self.settings
        assert self.asterisk and self.ami and self.acd and self.directory and self.calls
        devices = DeviceTracker(self.acd, self._agent_for_endpoint)
        self.desktops = DesktopHub(self.directory, phones_of=devices.phones_of)
        recordings = RecordingCollector(
            asterisk_spool_dir=self.asterisk.spool_dir,
            host_path=self.asterisk.host_path,
            archive_dir=s.recordings_dir,
        )
        self.callbacks = CallbackDialer(
            acd=self.acd,
            ami=self.ami,
            calls=self.calls,
            cases=cases,
            endpoint_of=self._first_phone,
            send_pop=self.desktops.send_pop,
            ring_timeout_seconds=s.ring_timeout_seconds,
        )
        await self._recover_recordings(recordings)
        await self._recover_fallback_calls()
        self.acd.handle_callbacks(self.callbacks.on_offer)
        self.ami.add_listener(self.callbacks.on_ami_event)
        self._running.stops.append(self.callbacks.drain)
        self.handler = CallHandler(
            calls=self.calls,
            cases=cases,
            acd=self.acd,
            desktops=self.desktops,
            recordings=recordings,
            callbacks=self.callbacks,
            speech=await self._start_speech(),
            catalogue=self.catalogue,
            services=self.services,
            settings=CallSettings(
                ring_timeout_seconds=s.ring_timeout_seconds,
                answer_target_seconds=s.answer_target_seconds,
                prompt_dir=self.asterisk.asterisk_sounds_dir,
                callbacks=bool(s.callback_trunk),
            ),
        )
        self._running.stops.append(self.handler.drain)
        self.ami.add_listener(self._on_ami_event)
        self.ami.add_listener(devices.on_ami_event)
        ami = self.ami
        self.ami.add_reconnect_listener(lambda: devices.reconcile(ami))
        await devices.reconcile(ami)
        follower = asyncio.create_task(self._follow_fallback_calls(), name="fallback-calls")
        self._running.stops.append(lambda: _cancel(follower))

        self.agi = FastAgiServer(self.handler, "127.0.0.1", s.agi_port)
        await self.agi.start()
        self._running.stops.append(self.agi.stop)

    async def _start_http(self, cases: CaseStore) -> None:
        s = self.settings
        assert self.asterisk and self.acd and self.directory and self.calls and self.desktops
        assert self.wallboard is not None
        ast = self.asterisk.settings
        app = build_app(
            [
                case_http.routes,
                agent_http.routes,
                acd_http.routes,
                open311.routes,
                page_routes(s.web_vendor_dir),
            ]
        )
        assert self.pool is not None
        app[open311.SERVICES_POOL] = self.pool
        app[acd_http.ACD_SERVICE] = self.acd
        app[acd_http.WALLBOARD] = self.wallboard
        app[acd_http.SUPERVISION] = Supervision(self.acd, self.ami, self.directory.endpoint_of)
        app[AUTHENTICATE] = agent_http.authenticate
        app[case_http.CALLS] = self.calls
        app[case_http.CASES] = cases
        app[agent_http.DIRECTORY] = self.directory
        app[agent_http.DESKTOPS] = self.desktops
        app[agent_http.ADMIN_TOKEN] = self.admin_token
        app[agent_http.LOGIN_THROTTLE] = LoginThrottle()
        app[agent_http.SIP_INFO] = {
            "server": "127.0.0.1",
            "port": ast.sip_port,
            "transport": "udp",
            "number": "19115",
            # The desk page's softphone registers over Asterisk's WebSocket transport.
            "ws_url": f"ws://127.0.0.1:{ast.http_port}/ws",
        }
        app[agent_http.AGENTS_CHANGED] = self._agent_created
        self.acd.subscribe(agent_http.forward_acd_events(app))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, s.http_host, s.http_port, backlog=1024)
        await site.start()
        self.http_port = runner.addresses[0][1]
        self._running.stops.append(runner.cleanup)
        self._running.stops.append(self._close_desktops)

    async def _start_speech(self) -> SpeechPath | None:
        """Speech for the languages with a model; None (keypad everywhere) when there is none."""
        s = self.settings
        assert self.asterisk is not None
        packs = load_language_packs({f"CITYLINE_VOSK_MODEL_{k.upper()}": v
                                     for k, v in s.vosk_models.items()})  # fmt: skip
        models = model_paths(packs)
        if not models:
            log.warning("speech_off", reason="no CITYLINE_VOSK_MODEL_<LANG> set: keypad menus only")
            return None
        if s.speech_phrases_file:
            text = await asyncio.to_thread(Path(s.speech_phrases_file).read_text, encoding="utf-8")
            extra = json.loads(text)
            self.services = services_with_phrases(self.services, extra)
        pool = SpeechPool(models, workers=s.speech_workers)
        phrases = {
            lang: [*grammar_phrases(lang, self.services), *YES_NO.get(lang, ()), *LANGUAGE_WORDS]
            for lang in models
        }
        await pool.start(phrases=phrases)
        self._running.stops.append(pool.close)
        for language, problem in pool.errors.items():
            log.error("speech_language_keypad_only", language=language, problem=problem)
        # Hang-ups arrive as frames or EOF; the idle guard only catches a stuck peer, and a phone
        # with silence suppression sends no audio while the resident thinks.
        audiosocket = AudioSocketServer(None, "127.0.0.1", 0, idle_timeout=60.0)
        await audiosocket.start()
        self._running.stops.append(audiosocket.stop)
        log.info("speech_on", languages=sorted(pool.available_languages()))
        path = SpeechPath(
            audiosocket=audiosocket,
            pool=pool,
            prompts=PromptAudio(self.asterisk.sounds_dir),
            services=self.services,
            settings=SpeechSettings(open_question_grammar=s.open_question_grammar),
        )
        await asyncio.to_thread(path.build_matchers)  # not on the loop that carries calls
        return path

    def _asterisk_instance(self) -> AsteriskInstance:
        s = self.settings
        location = find_asterisk(s.cache_dir, s.asterisk_binary or None)
        settings = AsteriskSettings.for_location(
            location,
            s.instance_name,
            sip_port=s.sip_port,
            ami_port=s.ami_port,
            agi_port=s.agi_port,
            http_port=s.asterisk_http_port,
            rtp_start=s.rtp_start,
            rtp_end=s.rtp_end,
            callback_trunk=s.callback_trunk,
        )
        return AsteriskInstance(settings)

    def _admin_token(self) -> str:
        configured = os.environ.get("CITYLINE_ADMIN_TOKEN")
        if configured:
            return configured
        path = self.settings.state_dir / "admin-token"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    async def _close_desktops(self) -> None:
        if self.desktops is not None:
            self.desktops.close_all()

    def addresses(self) -> dict[str, Any]:
        s = self.settings
        base = f"http://{s.http_host}:{self.http_port}"
        return {
            "number": "19115",
            "sip_registrar": f"udp:127.0.0.1:{s.sip_port}",
            "http": base,
            "agent_websocket": base.replace("http", "ws", 1) + "/ws/agent",
            "open311": f"{base}/open311/v2/services.json",
            "desk": f"{base}/desk",
            "wallboard": f"{base}/wallboard",
            "fastagi": f"agi://127.0.0.1:{self.agi.port if self.agi else s.agi_port}/city",
            "ami": f"127.0.0.1:{s.ami_port}",
            "database": redact(self.dsn),
            "admin_token_file": str(s.state_dir / "admin-token"),
        }

    # -- agents and AMI -----------------------------------------------------------------------
    async def _agent_created(self, agent: Agent) -> None:
        assert self.asterisk and self.ami and self.acd and self.directory
        endpoints = [
            AgentEndpoint(a.sip_endpoint, a.sip_secret) for a in self.directory.by_name.values()
        ]
        self.asterisk.write_agents(endpoints)
        await reload_agents(self.ami)
        if agent.role == "agent":
            self.acd.upsert_agent(agent.name, agent.skills)

    async def _recover_recordings(self, recordings: RecordingCollector) -> None:
        """Recordings a stopped or crashed run left in the spool go to the archive and onto
        their call records; nothing recorded is lost to a restart."""
        assert self.calls is not None
        for call_id, source in await recordings.leftovers():
            try:
                stored = await recordings.archive(call_id, source)
                call = await self.calls.get_call(uuid.UUID(call_id))
                if call is not None and not call.get("recording_path"):
                    await self.calls.update_call(uuid.UUID(call_id), recording_path=stored)
                    await self.calls.add_event(uuid.UUID(call_id), "recording_recovered")
                log.warning("recording_recovered", call_id=call_id, path=stored,
                            known_call=call is not None)  # fmt: skip
            except Exception:
                log.exception("recording_recovery_failed", call_id=call_id, path=str(source))

    async def _recover_fallback_calls(self) -> None:
        """Calls the fallback queue took while this process was gone (so no AMI event reached
        us) get their records from app_queue's queue_log; calls we already know are left be."""
        assert self.asterisk is not None and self.calls is not None
        path = self.asterisk.queue_log_path
        if not await asyncio.to_thread(path.is_file):
            return
        text = await asyncio.to_thread(path.read_text, "utf-8", "replace")
        recovered = 0
        for queued in queue_calls(text.splitlines(), FALLBACK_QUEUE):
            try:
                recovered += await self._record_queued_call(queued)
            except Exception:
                log.exception("fallback_recovery_failed", uniqueid=queued.uniqueid)
        if recovered:
            log.warning("fallback_calls_recovered", calls=recovered, source=str(path))

    async def _record_queued_call(self, queued: QueuedCall) -> int:
        assert self.calls is not None
        known = await self.calls.call_by_uniqueid(queued.uniqueid)
        if known is not None and known.get("ended_at") is not None:
            return 0
        if known is None:
            call_id = uuid.uuid4()
            await self.calls.create_call(
                call_id,
                asterisk_uniqueid=queued.uniqueid,
                caller_number=queued.caller,
                arrived_at=datetime.fromtimestamp(queued.entered_at, UTC),
            )
        else:
            call_id = known["id"]
        fields: dict[str, Any] = {
            "outcome": queued.outcome,
            "queued_at": datetime.fromtimestamp(queued.entered_at, UTC),
        }
        if queued.member is not None:
            endpoint = queued.member.removeprefix("PJSIP/").removesuffix(WEB_PHONE_SUFFIX)
            fields["agent"] = self._agent_for_endpoint(endpoint) or endpoint
        if queued.answered_at is not None:
            fields["answered_at"] = datetime.fromtimestamp(queued.answered_at, UTC)
        if queued.wait_seconds is not None:
            fields["wait_seconds"] = queued.wait_seconds
            fields["answered_within_target"] = queued.answered_at is not None and (
                queued.wait_seconds <= self.settings.answer_target_seconds
            )
        if queued.ended_at is not None:
            fields["ended_at"] = datetime.fromtimestamp(queued.ended_at, UTC)
        await self.calls.update_call(call_id, **fields)
        await self.calls.add_event(call_id, "recovered_from_queue_log", {"outcome": queued.outcome})
        return 1

    def _pop_for_transfer(self, call_id: str, target: str) -> None:
        """A colleague who takes a transferred call sees what the first agent saw."""
        assert self.desktops is not None
        colleague = self._agent_for_endpoint(target)
        by, pop = next(
            ((a, p) for a, p in self.desktops.last_pop.items() if p.get("call_id") == call_id),
            (None, None),
        )
        if colleague is not None and pop is not None and colleague != by:
            pop = {k: v for k, v in pop.items() if k != "type"}
            self.desktops.send_pop(colleague, {**pop, "transferred_from": by})

    def _first_phone(self, agent_id: str) -> str | None:
        """The one phone a callback rings (AMI Originate takes a single channel)."""
        assert self.desktops is not None
        return next(iter(self.desktops.phones_of(agent_id)), None)

    def _agent_for_endpoint(self, endpoint: str) -> str | None:
        assert self.directory is not None
        return next(
            (a.name for a in self.directory.by_name.values() if a.sip_endpoint == endpoint), None
        )

    def _on_ami_event(self, event: Mapping[str, str]) -> None:
        name = event.get("Event", "")
        if name == "DialEnd" and event.get("DialStatus") == "ANSWER" and self.handler:
            self.handler.on_agent_answered(event.get("Uniqueid", ""))
        elif name == "BlindTransfer" and event.get("Result") == "Success" and self.handler:
            target = event.get("Extension", "")
            call_id = self.handler.on_transferred(event.get("TransfereeUniqueid", ""), target)
            if call_id is not None:
                self._pop_for_transfer(call_id, target)
        elif name == "DTMFEnd" and event.get("Direction") == "Received" and self.handler:
            self.handler.on_key(event.get("Uniqueid", ""), event.get("Digit", ""))
        elif name == "UserEvent" and event.get("UserEvent") == "CityLineFallback":
            self._fallback_events.put_nowait(dict(event))
        elif name in ("AgentConnect", "Hangup") and event.get("Uniqueid") in self._fallback_calls:
            self._fallback_events.put_nowait(dict(event))

    async def _follow_fallback_calls(self) -> None:
        """Keep the records of calls in the fallback queue, one event at a time, in order."""
        while True:
            event = await self._fallback_events.get()
            try:
                await self._fallback_event(event)
            except Exception:
                log.exception("fallback_record_failed", ami_event=event)

    async def _fallback_event(self, event: dict[str, str]) -> None:
        assert self.calls is not None and self.directory is not None
        uniqueid = event.get("Uniqueid", "")
        if event.get("Event") == "UserEvent":
            try:
                call_id: uuid.UUID | None = uuid.UUID(event.get("CallId", ""))
            except ValueError:
                call_id = None  # the service never saw this call (it was down)
            if call_id is None or await self.calls.get_call(call_id) is None:
                call_id = uuid.uuid4()
                await self.calls.create_call(
                    call_id,
                    asterisk_uniqueid=uniqueid,
                    caller_number=event.get("Caller", ""),
                    arrived_at=utcnow(),
                )
            now = utcnow()
            await self.calls.update_call(call_id, outcome="fallback", queued_at=now)
            await self.calls.add_event(call_id, "fallback", {"agi_status": event.get("AgiStatus")})
            self._fallback_calls[uniqueid] = (call_id, now)
            log.warning("call_in_fallback_queue", call_id=str(call_id), uniqueid=uniqueid)
            return
        call_id, queued_at = self._fallback_calls[uniqueid]
        if event.get("Event") == "AgentConnect":
            endpoint = event.get("Interface", "").removeprefix("PJSIP/")
            agent = self._agent_for_endpoint(endpoint) or endpoint
            answered = utcnow()
            wait = (answered - queued_at).total_seconds()
            await self.calls.update_call(
                call_id,
                answered_at=answered,
                agent=agent,
                wait_seconds=round(wait, 3),
                answered_within_target=wait <= self.settings.answer_target_seconds,
            )
            await self.calls.add_event(call_id, "answered", {"agent": agent, "via": "fallback"})
        else:
            del self._fallback_calls[uniqueid]
            await self.calls.update_call(call_id, ended_at=utcnow())
            await self.calls.add_event(call_id, "ended", {"outcome": "fallback"})

    # -- stop -------------------------------------------------------------------------------------
    async def stop(self) -> None:
        while self._running.stops:
            stop = self._running.stops.pop()
            try:
                await asyncio.wait_for(stop(), timeout=15)
            except Exception:
                log.exception("stop_step_failed", step=getattr(stop, "__qualname__", repr(stop)))
        log.info("cityline_stopped")


def _local_midnight() -> float:
    """Start of today on this machine's clock: the "today" service-level window starts here."""
    now = datetime.now().astimezone()
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def _roll_days(stats: ServiceLevelWindows) -> None:
    """Start a new "today" at each local midnight, so the figures of a long run stay daily."""
    while True:
        now = datetime.now().astimezone()
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        await asyncio.sleep((midnight - now).total_seconds())
        stats.start_day(midnight.timestamp())
        log.info("service_level_day_started", day=midnight.date().isoformat())


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
