"""The CityLine process, wiring only: starts every part in order, stops them in reverse.

PostgreSQL (configured DSN, or the embedded server) -> migrations -> Asterisk (system or
sandbox) with our config -> AMI -> ACD -> FastAGI -> HTTP. Each folder wires its own routes
and AMI subscriptions (its setup() / subscribe()); this file only hands them what they need.
Tests start the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from acd import http as acd_http
from acd.devices import DeviceTracker
from acd.engine import Engine
from acd.live import AcdService
from acd.presence import PresenceStore
from acd.service_level import ServiceLevelWindows
from acd.supervision import Supervision
from acd.wallboard_hub import WallboardHub
from acd.widening import policy_from_name
from agent_client import http as agent_http
from agent_client.accounts import Agent, AgentDirectory
from agent_client.desktops import DesktopHub
from calls import http as call_http
from calls.callbacks import CallbackDialer, PendingCallbacks
from calls.fallback import FallbackCalls
from calls.fallback_members import FallbackMembers
from calls.leftovers import (
    recover_fallback_calls,
    recover_fallback_recordings,
    recover_recordings,
)
from calls.record import CallRecords
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
from db.pool import DATABASE_UNAVAILABLE, create_pool, redact
from ivr.audiosocket_server import AudioSocketServer
from ivr.call_handler import CallHandler, CallSettings
from ivr.intents import grammar_phrases
from ivr.languages import load_language_packs, model_paths
from ivr.prompts import render_prompts
from ivr.speech import SpeechPool
from ivr.speech_call import PromptAudio, SpeechPath, SpeechSettings, services_with_phrases
from ivr.speech_dialog import LANGUAGE_WORDS, YES_NO
from pbx.ami import AmiLink, live_channels
from pbx.asterisk import (
    CITY_NUMBER,
    AgentEndpoint,
    AsteriskInstance,
    AsteriskSettings,
    find_asterisk,
    reload_agents,
)
from pbx.fastagi import FastAgiServer
from pbx.watchdog import AsteriskKeeper, PbxHealth
from recordings import http as recording_http
from recordings.collector import RecordingCollector
from recordings.retention import RecordingRetention
from web import health
from web.app import create_app, setup_pages
from web.health import add_check
from web.kit import map_unavailable

log = structlog.get_logger(__name__)


DATABASE_UNAVAILABLE_MESSAGE = (
    "the database is not answering just now; calls go on, and this request can be tried"
    " again in a few seconds"
)

# A statement that takes longer means a frozen or overloaded server: the request gets a 503.
DATABASE_COMMAND_SECONDS = 10.0

SCHEMA_FILES = [
    ("cases", PROJECT_DIR / "cases" / "schema.sql"),
    ("calls", PROJECT_DIR / "calls" / "schema.sql"),
    ("agent_client", PROJECT_DIR / "agent_client" / "schema.sql"),
    ("services", PROJECT_DIR / "cases" / "services.sql"),
    ("recordings", PROJECT_DIR / "recordings" / "schema.sql"),
    ("acd_presence", PROJECT_DIR / "acd" / "presence.sql"),
    ("pending_callbacks", PROJECT_DIR / "calls" / "pending_callbacks.sql"),
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
        self.pbx: AsteriskKeeper | None = None
        self.acd: AcdService | None = None
        self.wallboard: WallboardHub | None = None
        self.callbacks: CallbackDialer | None = None
        self.agi: FastAgiServer | None = None
        self.handler: CallHandler | None = None
        self.directory: AgentDirectory | None = None
        self.desktops: DesktopHub | None = None
        self.http_port = settings.http_port
        self.records: CallRecords | None = None
        self.calls: CallStore | None = None  # reading call records (tests, reports)
        self.pool: asyncpg.Pool | None = None
        self.recordings: RecordingRetention | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.fallback_members: FallbackMembers | None = None

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
        self.records = CallRecords(
            pool,
            answer_target_seconds=s.answer_target_seconds,
            journal_dir=s.state_dir / "call-journal",
        )
        await self.records.start()
        self._running.stops.append(self.records.stop)
        # What a run left in the journal reaches the database before anything reads it.
        await self.records.drained(timeout=30.0)
        self.calls = self.records.read
        cases = CaseStore(pool, self.catalogue, self.services)
        self.directory = AgentDirectory(pool, self.catalogue, session_hours=s.session_hours)
        agents = await self.directory.load()
        await self._start_asterisk(agents)
        await self._start_acd(agents)
        await self._start_calls(cases)
        await self._start_http(cases)
        log.info("cityline_started", **self.addresses())

    async def _start_database(self) -> asyncpg.Pool:
        embedded: EmbeddedPostgres | None = None
        if not self.dsn:
            # Only one service runs per state directory (cityline.pid): a live server there
            # was left by a run of ours that died, and is ours to stop.
            embedded = EmbeddedPostgres(
                self.settings.state_dir / "postgres", take_over_leftover=True
            )
            self.dsn = await embedded.start()
            self._running.stops.append(embedded.stop)
            log.info("embedded_postgres_started", dsn=redact(self.dsn))
        pool = await create_pool(self.dsn, command_timeout=DATABASE_COMMAND_SECONDS)
        self._running.stops.append(pool.close)
        if embedded is not None:
            # The server we started is ours to keep up: a dead one is started again.
            self.embedded = embedded
            watcher = asyncio.create_task(
                embedded.watch(on_restart=pool.expire_connections), name="embedded-postgres"
            )
            self._running.stops.append(lambda: _cancel(watcher))
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
        self.pbx = AsteriskKeeper(self.asterisk, on_change=self._pbx_changed)
        keeper = asyncio.create_task(self.pbx.run(), name="asterisk-keeper")
        self._running.stops.append(lambda: _cancel(keeper))  # stopped before Asterisk is

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
        # Agents' states survive a restart: written behind on every change, restored now.
        assert self.pool is not None and self.directory is not None
        presence = PresenceStore(self.pool)
        self.acd.subscribe(presence.on_acd_event)
        await presence.start()
        self._running.stops.append(presence.stop)  # after the ACD's stop: the last states
        await presence.restore(self.acd, with_session=await self.directory.names_with_sessions())
        await self.acd.start()
        self._running.stops.append(self.acd.stop)
        days = asyncio.create_task(_roll_days(stats), name="service-level-days")
        self._running.stops.append(lambda: _cancel(days))
        self.wallboard = WallboardHub(self.acd, faults=self._faults)
        await self.wallboard.start()
        self._running.stops.append(self.wallboard.stop)

    async def _start_calls(self, cases: CaseStore) -> None:
        """Everything a resident's call goes through, from the FastAGI port to the agent."""
        s = self.settings
        assert self.asterisk and self.ami and self.acd and self.directory and self.records
        agent_for_endpoint = self.directory.agent_for_endpoint
        devices = DeviceTracker(self.acd, agent_for_endpoint)
        self.desktops = DesktopHub(self.directory, phones_of=devices.phones_of)
        recordings = RecordingCollector(
            asterisk_spool_dir=self.asterisk.spool_dir,
            host_path=self.asterisk.host_path,
            archive_dir=s.recordings_dir,
            store_format=s.recording_format,
        )
        assert self.pool is not None
        pending_callbacks = PendingCallbacks(self.pool)
        await pending_callbacks.start()
        self._running.stops.append(pending_callbacks.stop)  # after the dialer has drained
        self.callbacks = CallbackDialer(
            acd=self.acd,
            ami=self.ami,
            records=self.records,
            cases=cases,
            endpoint_of=self._first_phone,
            send_pop=self.desktops.send_pop,
            ring_timeout_seconds=s.ring_timeout_seconds,
            pending=pending_callbacks,
        )
        await recover_recordings(self.records, recordings)
        # Followed before asking what is in the queue, so no hang-up falls in between.
        fallback = FallbackCalls(
            self.records, agent_for_endpoint=agent_for_endpoint, recordings=recordings
        )
        fallback.subscribe(self.ami)
        channels = await live_channels(self.ami)
        await recover_fallback_calls(
            self.records, self.asterisk.queue_log_path, agent_for_endpoint,
            live_channels=channels, follow=fallback.adopt,
        )  # fmt: skip
        await self.records.drained(timeout=10.0)  # the rows recovered just now, to look up
        await recover_fallback_recordings(self.records, recordings, channels)
        self.acd.waiting_elsewhere = fallback.waiting  # the wallboard counts them as waiting
        self.acd.handle_callbacks(self.callbacks.on_offer)
        self.callbacks.subscribe(self.ami)
        await self.callbacks.restore()  # callbacks asked for before a restart wait again
        self._running.stops.append(self.callbacks.drain)
        self.handler = CallHandler(
            records=self.records,
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
                prompt_dir=self.asterisk.asterisk_sounds_dir,
                callbacks=bool(s.callback_trunk),
            ),
            agent_for_endpoint=agent_for_endpoint,
        )
        self._running.stops.append(self.handler.drain)
        self.handler.subscribe(self.ami)
        devices.subscribe(self.ami)
        ami = self.ami
        self.ami.add_reconnect_listener(lambda: devices.reconcile(ami))
        await devices.reconcile(ami)
        follower = asyncio.create_task(fallback.follow(), name="fallback-calls")
        self._running.stops.append(fallback.drain)
        self._running.stops.append(lambda: _cancel(follower))
        # The fallback queue rings only agents the ACD has ready or on a call.
        self.fallback_members = FallbackMembers(self.ami, endpoint_of=self.directory.endpoint_of)
        self.acd.subscribe(self.fallback_members.on_acd_event)
        self.fallback_members.want_all(
            {a: self.acd.agent_view(a)["state"] for a in self.acd.engine.agent_ids()}
        )
        self.ami.add_reconnect_listener(self.fallback_members.resync)
        members = asyncio.create_task(self.fallback_members.run(), name="fallback-members")
        self._running.stops.append(lambda: _cancel(members))

        self.agi = FastAgiServer(
            self.handler, "127.0.0.1", s.agi_port, key=self.asterisk.settings.agi_key
        )
        await self.agi.start()
        self._running.stops.append(self.agi.stop)

    async def _start_http(self, cases: CaseStore) -> None:
        s = self.settings
        assert self.asterisk and self.ami and self.acd and self.directory and self.records
        assert self.wallboard is not None and self.desktops is not None and self.pool is not None
        ast = self.asterisk.settings
        app = create_app()
        map_unavailable(app, DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE)
        agent_http.setup(
            app,
            directory=self.directory,
            desktops=self.desktops,
            admin_token=self.admin_token,
            sip_info={
                "server": "127.0.0.1",
                "port": ast.sip_port,
                "transport": "udp",
                "number": CITY_NUMBER,
                # The desk page's softphone registers over Asterisk's WebSocket transport.
                "ws_url": f"ws://127.0.0.1:{ast.http_port}/ws",
            },
            agents_changed=self._agent_created,
            acd=self.acd,
        )
        acd_http.setup(
            app,
            acd=self.acd,
            wallboard=self.wallboard,
            supervision=Supervision(self.acd, self.ami, self.directory.endpoint_of),
        )
        case_http.setup(app, cases=cases, calls=self.records)
        call_http.setup(app, calls=self.records.read)
        self.recordings = recording_http.setup(
            app, pool=self.pool, calls=self.records.read, ledger=self.records,
            retention_days=s.recording_retention_days, archive_dir=s.recordings_dir,
        )  # fmt: skip
        sweep = asyncio.create_task(self.recordings.run(), name="recording-retention")
        self._running.stops.append(lambda: _cancel(sweep))
        open311.setup(app, pool=self.pool)
        setup_pages(app, s.web_vendor_dir)
        health.setup(app)
        add_check(app, "pbx", self._pbx_health)
        add_check(app, "database", self._database_health)
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
            fallback_wait_seconds=s.fallback_wait_seconds,
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
            "number": CITY_NUMBER,
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
        if self.fallback_members is not None:
            self.fallback_members.resync()  # the reload re-read the members unpaused
        if agent.role == "agent":
            self.acd.upsert_agent(agent.name, agent.skills)

    def _faults(self) -> dict[str, Any]:
        """What the wallboard shows of the parts outside the ACD."""
        return {"pbx": self.pbx.health.view(time.time())} if self.pbx is not None else {}

    def _pbx_changed(self, health: PbxHealth) -> None:
        if self.wallboard is not None:
            self.wallboard.fault_changed()

    async def _pbx_health(self) -> dict[str, Any]:
        assert self.pbx is not None and self.ami is not None
        return {**self.pbx.health.view(time.time()), "ami_connected": self.ami.connected}

    async def _database_health(self) -> dict[str, Any]:
        assert self.pool is not None
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), timeout=2.0)
        except Exception as exc:
            return {"ok": False, "problem": f"PostgreSQL does not answer: {exc!r}"}
        return {"ok": True}

    def _first_phone(self, agent_id: str) -> str | None:
        """The one phone a callback rings (AMI Originate takes a single channel)."""
        assert self.desktops is not None
        return next(iter(self.desktops.phones_of(agent_id)), None)

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
