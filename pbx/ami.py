"""One small, bounded wrapper around panoramisk's AMI Manager.

panoramisk's traps, and what this module does about each:
- connect() resolves on TCP, not on login, and a wrong secret retries forever: start() waits for
  our own logged-in signal (login response, then FullyBooted) under a timeout.
- its keep-alive Ping has no timeout: our watchdog awaits Ping under a timeout and aborts the
  transport when Asterisk stops answering, so panoramisk reconnects.
- an exception in a sync handler drops the connection and async handlers run out of order: one
  sync '*' handler only enqueues; one consumer task calls listeners in order.
- some actions never resolve as lists: every action runs under asyncio.wait_for, single responses
  with as_list=False.
- an event that echoes a pending action's ActionID (UserEvent does) is taken as that action's
  answer and lost: for single-response actions such events go to the listeners instead.
- actions pending at a disconnect are re-sent by panoramisk after the next login: we fail them
  instead (AmiNotConnected), so a timed-out Originate is never replayed behind the caller's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

log = structlog.get_logger(__name__)

ActionValue = str | Sequence[str]  # repeated headers (Variable: ...) are given as a list


class AmiError(Exception):
    """Asterisk answered an action with an error, or the link could not log in."""


class AmiTimeout(AmiError):
    """No response within the action's timeout."""


class AmiNotConnected(AmiError):
    """The link is down (not logged in), or went down while the action was in flight."""


class AmiMessage(Mapping[str, str]):
    """An AMI event or response: read-only, case-insensitive keys, str values.

    A header that Asterisk repeats (Output, ChanVariable) is joined with newlines.
    """

    __slots__ = ("_store",)

    def __init__(self, headers: Mapping[str, Any]) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        for key, value in headers.items():
            if key == "content" and not value:
                continue  # panoramisk adds an empty body to every message
            text = "\n".join(map(str, value)) if isinstance(value, list) else str(value)
            self._store[key.lower()] = (key, text)

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"AmiMessage({dict(self.items())!r})"


EventListener = Callable[[AmiMessage], None]
ReconnectListener = Callable[[], Awaitable[None] | None]

_RELOGGED_IN = object()  # queue marker: run reconnect listeners at this point of the stream


# Headers that say what a message is. Asterisk writes each once, first; a repeat can only come
# from a UserEvent's body, which is dial plan text holding a caller's number (commas in it make
# headers). panoramisk fails on the list and drops the connection, so the first value is kept.
_SINGLE_HEADERS = ("Event", "Response", "ActionID", "CommandID")


class _Protocol(AMIProtocol):
    def handle_message(self, message: Any) -> None:
        # Called inside data_received: an exception here would drop the connection.
        try:
            for key in _SINGLE_HEADERS:
                value = message.get(key)
                if isinstance(value, list):
                    message[key] = value[0]
            self._handle(message)
        except Exception:
            log.exception("ami_message_unreadable")

    def _handle(self, message: Any) -> None:
        if "event" in message and "response" not in message:
            pending = self.responses.get(message.id)
            if pending is None and message.action_id:
                pending = self.responses.get(message.action_id)
            # A single-response action is answered by a Response, never by an event.
            if pending is not None and pending.as_list is False and not pending.responses:
                self.factory.dispatch(message)
                return
        super().handle_message(message)


class _Manager(Manager):
    """panoramisk's Manager: reports connection and login to the link, stays down once closed."""

    def __init__(self, link: AmiLink, **config: Any) -> None:
        super().__init__(**config)
        self._link = link

    def connect(
        self, run_forever: bool = False, on_startup: Any = None, on_shutdown: Any = None
    ) -> Any:
        if self._link._closing:  # a reconnect timer may still fire after stop()
            return None
        return super().connect()

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if self._link._closing:
            if not f.cancelled() and f.exception() is None:
                f.result()[0].close()
            return
        super().connection_made(f)
        if self._connected:
            self._link._on_transport_up()

    def login(self, future: asyncio.Future[Any]) -> bool:
        if future.cancelled() or future.exception() is not None:
            return False
        ok = bool(super().login(future))
        self._link._on_login_response(ok, future.result())
        return ok

    def connection_lost(self, exc: Any) -> None:
        super().connection_lost(exc)
        self._link._on_transport_down(exc)


class AmiLink:
    """A logged-in AMI connection with an ordered event stream, bounded actions and a watchdog."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        login_timeout: float = 5.0,
        action_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 3.0,
        reconnect_delay: int = 1,
        event_queue_size: int = 10_000,
        reconnect_listener_timeout: float = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self._username, self._secret = username, secret
        self.login_timeout = login_timeout
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_listener_timeout = reconnect_listener_timeout
        self.dropped_events = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=event_queue_size)
        # (event name, or None for every event) -> listener, called in registration order
        self._listeners: list[tuple[str | None, EventListener]] = []
        self._reconnect_listeners: list[ReconnectListener] = []
        self._manager: _Manager | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Future[Any]] = set()
        self._closing = False
        self._transport_up = False
        self._logged_in = False
        self._ever_logged_in = False
        self._transport_up_at = 0.0
        self._first_login: asyncio.Future[None] | None = None
        self._log = log.bind(ami=f"{host}:{port}")

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and log in; AmiError on a refused login or none within login_timeout."""
        if self._manager is not None:
            raise RuntimeError("AmiLink already started")
        loop = asyncio.get_running_loop()
        self._closing = False
        self._ever_logged_in = False
        self._first_login = loop.create_future()
        # Created inside the running loop; panoramisk's own pinger is replaced by the watchdog.
        self._manager = _Manager(
            self,
            loop=loop,
            host=self.host,
            port=self.port,
            username=self._username,
            secret=self._secret,
            events="on",
            ping_delay=10**6,
            ping_interval=10**6,
            reconnect_timeout=self.reconnect_delay,
            protocol_factory=_Protocol,
        )
        self._manager.register_event("*", self._on_event)
        self._tasks = [
            loop.create_task(self._consume(), name="ami-events"),
            loop.create_task(self._watchdog(), name="ami-watchdog"),
        ]
        self._manager.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_login), self.login_timeout)
        except TimeoutError:
            await self.stop()
            raise AmiError(
                f"AMI at {self.host}:{self.port} did not log in within {self.login_timeout}s"
            ) from None
        except AmiError:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._closing = True
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()
        self._fail_pending("AMI link stopped")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._transport_up = self._logged_in = False
        if self._first_login is not None and not self._first_login.done():
            self._first_login.cancel()
        self._log.info("ami_stopped")

    @property
    def connected(self) -> bool:
        """Logged in and Asterisk fully booted."""
        return self._logged_in and not self._closing

    def add_listener(self, callback: EventListener) -> None:
        """Called in order for every event; an exception is logged and the stream goes on."""
        self._listeners.append((None, callback))

    def subscribe(self, event_name: str, callback: EventListener) -> None:
        """Called in order for each event of that name (e.g. "Hangup"), like add_listener."""
        self._listeners.append((event_name, callback))

    def add_reconnect_listener(self, callback: ReconnectListener) -> None:
        """Called after every re-login (not the first), before later events, to reconcile state."""
        self._reconnect_listeners.append(callback)

    # -- actions ----------------------------------------------------------------------------

    async def action(
        self,
        action: Mapping[str, ActionValue],
        *,
        timeout: float | None = None,
    ) -> AmiMessage:
        """Send an action that has a single response."""
        resp = await self._send(action, as_list=False, limit=timeout)
        message = AmiMessage(resp)
        _raise_on_error(action, message)
        return message

    async def action_list(
        self,
        action: Mapping[str, ActionValue],
        *,
        timeout: float | None = None,
    ) -> list[AmiMessage]:
        """Send an action answered by an event list (CoreShowChannels, QueueStatus, ...).

        Returns the list's events without the leading response and the closing *Complete event.
        """
        # as_list=None lets panoramisk tell a list from an error answer; as_list=True would wait
        # for a list that never comes when Asterisk answers Response: Error.
        resp = await self._send(action, as_list=None, limit=timeout)
        messages = [AmiMessage(m) for m in (resp if isinstance(resp, list) else [resp])]
        _raise_on_error(action, messages[0])
        return [
            m
            for m in messages
            if "Event" in m
            and m.get("EventList", "").lower() != "complete"
            and not m["Event"].endswith("Complete")
        ]

    async def command(self, cli_command: str, *, timeout: float | None = None) -> str:
        """Run a CLI command and return its output."""
        resp = await self.action({"Action": "Command", "Command": cli_command}, timeout=timeout)
        return resp.get("Output", resp.get("content", ""))

    async def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: str = "1",
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        ring_timeout: float = 30.0,
        action_id: str | None = None,
        timeout: float | None = None,
    ) -> AmiMessage:
        """Async Originate: returns once queued; the outcome arrives as an OriginateResponse event
        carrying the response's ActionID."""
        action: dict[str, ActionValue] = {
            "Action": "Originate",
            "Channel": channel,
            "Async": "true",
            "Timeout": str(int(ring_timeout * 1000)),
        }
        if application is not None:
            action["Application"] = application
            if data is not None:
                action["Data"] = data
        else:
            if context is None or exten is None:
                raise ValueError("originate needs an application, or a context and an exten")
            action.update(Context=context, Exten=exten, Priority=priority)
        if caller_id is not None:
            action["CallerID"] = caller_id
        if variables:
            action["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        if action_id is not None:
            action["ActionID"] = action_id
        return await self.action(action, timeout=timeout)

    async def _send(
        self, action: Mapping[str, ActionValue], *, as_list: bool | None, limit: float | None
    ) -> Any:
        manager = self._manager
        if manager is None or not self.connected:
            raise AmiNotConnected(f"AMI link is down; cannot send {action.get('Action')}")
        payload = {k: list(v) if not isinstance(v, str) else v for k, v in action.items()}
        future: asyncio.Future[Any] = manager.send_action(payload, as_list=as_list)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        bound = self.action_timeout if limit is None else limit
        try:
            # wait_for cancels the future on timeout, so panoramisk never re-sends it later.
            return await asyncio.wait_for(future, bound)
        except TimeoutError:
            raise AmiTimeout(f"no answer to {action.get('Action')} within {bound}s") from None

    def _fail_pending(self, why: str) -> None:
        for future in list(self._pending):
            if not future.done():
                future.set_exception(AmiNotConnected(why))
        self._pending.clear()

    # -- connection state (called from panoramisk's callbacks: must not raise) --------------

    def _on_transport_up(self) -> None:
        self._transport_up = True
        self._logged_in = False
        self._transport_up_at = asyncio.get_running_loop().time()
        self._log.debug("ami_tcp_connected")

    def _on_login_response(self, ok: bool, response: Any) -> None:
        if ok:
            return  # logged in; "connected" once FullyBooted says Asterisk is ready
        reason = getattr(response, "message", "") or "login refused"
        self._log.error("ami_login_failed", reason=reason, username=self._username)
        if self._first_login is not None and not self._first_login.done():
            self._first_login.set_exception(AmiError(f"AMI login failed: {reason}"))

    def _on_transport_down(self, exc: Any) -> None:
        was_logged_in = self._logged_in
        self._transport_up = self._logged_in = False
        self._fail_pending("AMI connection lost")
        if not self._closing:
            # panoramisk passes the Shutdown event itself when Asterisk stops cleanly
            reason = f"Asterisk {exc.get('Event')}" if isinstance(exc, Mapping) else str(exc or "")
            self._log.warning("ami_disconnected", was_logged_in=was_logged_in, reason=reason)

    def _on_event(self, _manager: Any, event: Any) -> None:
        """panoramisk's only handler: enqueue and return. It must never raise."""
        try:
            if event.get("Event") == "FullyBooted" and self._transport_up and not self._logged_in:
                self._logged_in = True
                if not self._ever_logged_in:
                    self._ever_logged_in = True
                    self._log.info("ami_connected")
                    if self._first_login is not None and not self._first_login.done():
                        self._first_login.set_result(None)
                else:
                    self._log.info("ami_reconnected")
                    self._enqueue(_RELOGGED_IN)
            self._enqueue(event)
        except Exception:
            self._log.exception("ami_event_enqueue_failed")

    def _enqueue(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped_events += 1
            if self.dropped_events == 1 or self.dropped_events % 1000 == 0:
                self._log.error("ami_events_dropped", dropped=self.dropped_events)

    # -- tasks ------------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _RELOGGED_IN:
                await self._run_reconnect_listeners()
                continue
            try:
                event = AmiMessage(item)
            except Exception:
                self._log.exception("ami_event_unreadable")
                continue
            name = event.get("Event")
            for wanted, listener in list(self._listeners):
                if wanted is not None and wanted != name:
                    continue
                try:
                    listener(event)
                except Exception:
                    self._log.exception("ami_listener_failed", ami_event=event.get("Event"))

    async def _run_reconnect_listeners(self) -> None:
        for callback in list(self._reconnect_listeners):
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self.reconnect_listener_timeout)
            except Exception:
                self._log.exception("ami_reconnect_listener_failed")

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ping_interval)
            if self._manager is None or not self._transport_up:
                continue  # panoramisk is already reconnecting
            if not self._logged_in:
                # TCP up but no login answer: Asterisk is hung or still booting
                if loop.time() - self._transport_up_at > self.login_timeout:
                    self._abort("login not answered")
                continue
            try:
                await self._send({"Action": "Ping"}, as_list=False, limit=self.ping_timeout)
            except AmiTimeout:
                self._abort(f"no Pong within {self.ping_timeout}s")
            except AmiError:
                pass  # disconnected meanwhile; reconnect already under way

    def _abort(self, why: str) -> None:
        self._log.warning("ami_connection_hung", reason=why)
        protocol = getattr(self._manager, "protocol", None)
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abort()  # connection_lost follows, and panoramisk reconnects


def _raise_on_error(action: Mapping[str, ActionValue], message: AmiMessage) -> None:
    if message.get("Response", "").lower() in ("error", "fail", "failure"):
        detail = message.get("Output") or message.get(
            "Message", "error"
        )  # Command puts it in Output
        raise AmiError(f"{action.get('Action')} failed: {detail}")


async def live_channels(ami: AmiLink, *, timeout: float = 10.0) -> set[str]:
    """The Uniqueids of every channel Asterisk has up now."""
    channels = await ami.action_list({"Action": "CoreShowChannels"}, timeout=timeout)
    return {c["Uniqueid"] for c in channels if c.get("Uniqueid")}
