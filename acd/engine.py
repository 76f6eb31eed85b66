"""Skills-based ACD engine: pure, single writer, time passed in.

Routing is indexed by *pools* of agents who share skill minimums (acd/pools.py): a freed agent
looks only at the heads of its own pools, and a new call only at the heads of its rung's
pools. Agents and calls change state only through their transition tables (acd/agents.py,
acd/calls.py); the read side (explain, snapshot) is in acd/reports.py.

Invariant kept after every public method: no available agent belongs to a pool that holds a
waiting call (otherwise that call would already have been offered to it).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from acd.agents import (
    BUSY_STATES,
    AcdError,
    Agent,
    AgentEvent,
    AgentState,
    check_skills,
    next_state,
)
from acd.calls import (
    Announcement,
    Call,
    CallEvent,
    CallInfo,
    CallKey,
    CallState,
    FollowUp,
    Offer,
    QueueKey,
    states_allowing,
)
from acd.pools import PoolIndex
from acd.service_level import ServiceLevelWindows
from acd.widening import TargetDrivenWidening, WideningPolicy


class Engine:
    """The ACD. Every method that may free an agent or add a call returns the Offers it made."""

    FINISHED_KEPT = 10_000  # finished calls kept for call_info

    def __init__(
        self,
        *,
        widening: WideningPolicy | None = None,
        target_seconds: float = 15.0,
        wrap_up_seconds: float = 0.0,
        group_wrap_up_seconds: Mapping[str, float] | None = None,
        neighbours: Mapping[str, Iterable[str]] | None = None,
        expected_handle_seconds: float = 240.0,
        handle_smoothing: float = 0.05,
        announce_period: float | None = None,
        overflow_limit: int | None = None,
        callback_retry_seconds: float = 120.0,
        callback_max_attempts: int = 3,
        stats: ServiceLevelWindows | None = None,
    ) -> None:
        self.policy: WideningPolicy = widening or TargetDrivenWidening()
        self.target_seconds = target_seconds
        self.wrap_up_seconds = wrap_up_seconds
        self.group_wrap_up_seconds = dict(group_wrap_up_seconds or {})
        self.neighbours = {g: tuple(n) for g, n in (neighbours or {}).items()}
        self.handle_estimate = expected_handle_seconds  # live mean of offer -> free again
        self.handle_smoothing = handle_smoothing
        self.announce_period = announce_period
        self.overflow_limit = overflow_limit
        self.callback_retry_seconds = callback_retry_seconds
        self.callback_max_attempts = callback_max_attempts
        self.stats = stats

        self._seq = itertools.count()
        self._agents: dict[str, Agent] = {}
        self._busy_since: dict[str, float] = {}
        self._calls: dict[str, Call] = {}
        self._finished: OrderedDict[str, Call] = OrderedDict()
        self._pools = PoolIndex(self.policy, self.neighbours, self._agents, self._calls)
        self._queues: dict[QueueKey, list[CallKey]] = {}
        self._widenable: dict[str, None] = {}  # waiting calls the target policy may still widen
        self._wrap_timers: list[tuple[float, int, str]] = []
        self._step_timers: list[tuple[float, int, str, int]] = []
        self._retry_timers: list[tuple[float, int, str]] = []
        self._announce_timers: list[tuple[float, int, str]] = []
        self._follow_ups: list[FollowUp] = []
        self.decisions = 0  # offers made, for benchmarks

    # ------------------------------------------------------------------ lookups

    def _agent(self, agent_id: str) -> Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise AcdError(f"unknown agent {agent_id!r}")
        return agent

    def _call(self, call_id: str, *states: CallState) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            if call_id in self._finished:
                raise AcdError(
                    f"call {call_id!r} is already finished ({self._finished[call_id].outcome})"
                )
            raise AcdError(f"unknown call {call_id!r}")
        if states and call.state not in states:
            wanted = " or ".join(s.value for s in states)
            raise AcdError(f"call {call_id!r} is {call.state.value}, expected {wanted}")
        return call

    def _call_for(self, call_id: str, event: CallEvent) -> Call:
        """The live call, if `event` is legal in its state (checked before anything changes)."""
        return self._call(call_id, *states_allowing(event))

    def agent_state(self, agent_id: str) -> AgentState:
        return self._agent(agent_id).state

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def agent_info(self, agent_id: str) -> dict[str, Any]:
        a = self._agent(agent_id)
        return {
            "agent_id": a.agent_id,
            "state": a.state.value,
            "since": a.since,
            "pause_reason": a.pause_reason,
            "reachable": a.reachable,
            "call_id": a.call_id,
            "skills": dict(a.skills),
            "wrap_until": a.wrap_until,
        }

    def call_info(self, call_id: str) -> CallInfo:
        call = self._calls.get(call_id) or self._finished.get(call_id)
        if call is None:
            raise AcdError(f"unknown call {call_id!r}")
        return call.info()

    def waiting_count(self) -> int:
        return sum(len(q) for q in self._queues.values())

    # Read-only views for the read side (acd/reports.py); only the engine writes what they show.

    @property
    def agents(self) -> Mapping[str, Agent]:
        return MappingProxyType(self._agents)

    @property
    def live_calls(self) -> Mapping[str, Call]:
        """Calls not finished yet."""
        return MappingProxyType(self._calls)

    def rung_members(self, call: Call) -> set[str]:
        """The agents who may take the call at its current rung, whatever they are doing."""
        pools = call.pools or self._pools.rung_pool_ids(call.language, call.group, call.rung)
        return self._pools.members(pools)

    def widens_by_target(self, call_id: str) -> bool:
        """Whether the target-driven policy may still step this waiting call down."""
        return call_id in self._widenable

    # ------------------------------------------------------------------ waiting calls

    def _index_call(self, call: Call) -> None:
        """Put a waiting call into the pools of its current rung and set its widening."""
        self._pools.add_call(call)
        due = self.policy.step_due_at(call.enqueued_at, call.rung)
        if due is not None:
            heapq.heappush(self._step_timers, (due, next(self._seq), call.call_id, call.version))
        if self.policy.target_driven and call.rung + 1 < len(self.policy.ladder):
            self._widenable[call.call_id] = None
        else:
            self._widenable.pop(call.call_id, None)

    def _unindex_call(self, call: Call) -> None:
        self._pools.remove_call(call)
        self._widenable.pop(call.call_id, None)

    def _queue_add(self, call: Call) -> None:
        bisect.insort(self._queues.setdefault(call.queue, []), call.key)

    def _queue_remove(self, call: Call) -> None:
        queue = self._queues.get(call.queue)
        if queue is None:
            return
        i = bisect.bisect_left(queue, call.key)
        if i < len(queue) and queue[i] == call.key:
            del queue[i]

    # ------------------------------------------------------------------ agent state changes

    def _transition(
        self, agent: Agent, event: AgentEvent, now: float, reason: str | None = None
    ) -> None:
        old = agent.state
        new = next_state(agent.agent_id, old, event)
        if old is new and new is not AgentState.PAUSED:
            return  # ready -> ready keeps the idle start
        was_available = agent.available
        was_busy = old in BUSY_STATES
        agent.state = new
        agent.since = now
        agent.pause_reason = reason if new is AgentState.PAUSED else None
        if new is not AgentState.WRAP_UP:
            agent.wrap_until = None
        is_busy = new in BUSY_STATES
        if was_busy != is_busy:
            self._pools.busy_changed(agent, 1 if is_busy else -1)
            if is_busy:
                self._busy_since[agent.agent_id] = now
            else:
                self._learn_handle_time(now - self._busy_since.pop(agent.agent_id, now))
        self._pools.availability_changed(agent, was_available)
        if self.stats is not None:
            self.stats.agent_state(agent.agent_id, new.value, now)

    def _learn_handle_time(self, seconds: float) -> None:
        if seconds > 0:
            self.handle_estimate += self.handle_smoothing * (seconds - self.handle_estimate)

    # ------------------------------------------------------------------ matching

    def _offer(self, call: Call, agent: Agent, now: float) -> Offer:
        self._unindex_call(call)
        self._queue_remove(call)
        self._transition(agent, AgentEvent.OFFER, now)
        agent.call_id = call.call_id
        call.transition(CallEvent.OFFER)
        call.agent_id = agent.agent_id
        self.decisions += 1
        return Offer(call.call_id, agent.agent_id, call.rung, call.callback_number)

    def _dispatch_agent(self, agent: Agent, now: float, offers: list[Offer]) -> None:
        if not agent.available:
            return
        call = self._pools.best_call(agent)
        if call is not None:
            offers.append(self._offer(call, agent, now))

    def _dispatch_call(self, call: Call, now: float, offers: list[Offer]) -> None:
        """Offer the call at its rung; step down while the policy says the target is at risk."""
        while True:
            agent = self._pools.best_agent(call.pools)
            if agent is not None:
                offers.append(self._offer(call, agent, now))
                return
            if not self._should_widen(call, now):
                return
            self._widen(call)

    def _should_widen(self, call: Call, now: float) -> bool:
        if call.rung + 1 >= len(self.policy.ladder):
            return False
        due = self.policy.step_due_at(call.enqueued_at, call.rung)
        if due is not None and due <= now:
            return True
        return self._at_risk(call, now) and self._ready_on_wider_rung(call)

    def _at_risk(self, call: Call, now: float) -> bool:
        return self.policy.at_risk(
            now - call.enqueued_at, self._predicted_wait(call), self.target_seconds
        )

    def _ready_on_wider_rung(self, call: Call) -> bool:
        """Whether an agent on a rung below the call's is ready now.

        Stepping down only helps a call at risk when someone there can answer it now. With every
        wider agent busy, it would only join those agents' own callers in the race for the next
        free one, and be handled more slowly by a less skilled agent when it wins.
        """
        return any(
            self._pools.best_agent(self._pools.rung_pool_ids(call.language, call.group, rung))
            is not None
            for rung in range(call.rung + 1, len(self.policy.ladder))
        )

    def _widen(self, call: Call) -> None:
        self._unindex_call(call)
        call.rung += 1
        self._index_call(call)

    def _position(self, call: Call) -> int:
        queue = self._queues.get(call.queue, [])
        return bisect.bisect_left(queue, call.key) + 1

    def _predicted_wait(self, call: Call) -> float:
        """Position over the live answer rate of the agents who may take it at this rung.

        The answer rate is the rate at which those agents become free: busy members over the
        live mean handle time. No busy member means no one will free up: infinite.
        """
        busy = self._pools.busy(call.pools)
        if busy <= 0:
            return math.inf
        return self._position(call) * self.handle_estimate / busy

    # ------------------------------------------------------------------ agents API

    def upsert_agent(
        self,
        agent_id: str,
        skills: Mapping[str, int],
        now: float,
        *,
        wrap_up_seconds: float | None = None,
    ) -> list[Offer]:
        """Create an agent (logged out) or change its skills in any state."""
        checked = check_skills(agent_id, skills)
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = Agent(agent_id, checked, since=now, wrap_up_seconds=wrap_up_seconds)
            self._agents[agent_id] = agent
        else:
            agent.skills = checked
            agent.wrap_up_seconds = wrap_up_seconds
        self._pools.place(agent)
        offers: list[Offer] = []
        self._dispatch_agent(agent, now, offers)
        return offers

    def login(self, agent_id: str, now: float) -> list[Offer]:
        """Paused("login"): the agent says ready when they are.

        Legal in every state (acd/agents.py): a log-in from a second desk leaves a ready,
        paused or wrapping-up agent paused("login"), and one with a call keeps the call.
        """
        self._transition(self._agent(agent_id), AgentEvent.LOGIN, now, "login")
        return []

    def set_ready(self, agent_id: str, now: float) -> list[Offer]:
        agent = self._agent(agent_id)
        self._transition(agent, AgentEvent.READY, now)
        offers: list[Offer] = []
        self._dispatch_agent(agent, now, offers)
        return offers

    def pause(self, agent_id: str, reason: str, now: float) -> list[Offer]:
        if not reason:
            raise AcdError(f"agent {agent_id!r}: a pause needs a reason")
        self._transition(self._agent(agent_id), AgentEvent.PAUSE, now, reason)
        return []

    def logout(self, agent_id: str, now: float) -> list[Offer]:
        self._transition(self._agent(agent_id), AgentEvent.LOGOUT, now)
        return []

    def set_reachable(self, agent_id: str, reachable: bool, now: float) -> list[Offer]:
        """Device state: an unregistered phone is not offered calls; the state is kept."""
        agent = self._agent(agent_id)
        was_available = agent.available
        agent.reachable = reachable
        self._pools.availability_changed(agent, was_available)
        offers: list[Offer] = []
        self._dispatch_agent(agent, now, offers)
        return offers

    # ------------------------------------------------------------------ calls API

    def enqueue(
        self, call_id: str, *, language: str, group: str, priority: int = 0, now: float
    ) -> list[Offer]:
        """A call enters the queue now (the service-level clock starts here)."""
        if call_id in self._calls or call_id in self._finished:
            raise AcdError(f"call {call_id!r} was already enqueued")
        if not language or not group:
            raise AcdError(f"call {call_id!r}: language and group are required")
        call = Call(call_id, language, group, priority, now, next(self._seq))
        self._calls[call_id] = call
        self._queue_add(call)
        if self.overflow_limit is not None and len(self._queues[call.queue]) > self.overflow_limit:
            call.overflow = True
        if self.stats is not None:
            self.stats.call_enqueued(call_id, language, group, now)
        self._index_call(call)
        offers: list[Offer] = []
        self._dispatch_call(call, now, offers)
        if call.state is CallState.WAITING and (self.announce_period is not None or call.overflow):
            first = now if call.overflow else now + (self.announce_period or 0.0)
            heapq.heappush(self._announce_timers, (first, next(self._seq), call_id))
        return offers

    def answered(self, call_id: str, now: float) -> list[Offer]:
        """The reserved agent picked up."""
        call = self._call_for(call_id, CallEvent.ANSWER)
        if call.callback_number is not None:
            raise AcdError(f"call {call_id!r} is a callback: report it with callback_result")
        self._connect(call, now)
        return []

    def _connect(self, call: Call, now: float) -> None:
        assert call.agent_id is not None
        self._transition(self._agents[call.agent_id], AgentEvent.ANSWER, now)
        call.transition(CallEvent.ANSWER)
        call.answered_at = now
        if self.stats is not None:
            if call.callback_number is None:
                self.stats.call_answered(call.call_id, now)
            else:
                self.stats.callback_connected(call.call_id, now)

    def _back_in_place(
        self, call: Call, event: CallEvent, agent_event: AgentEvent, reason: str, now: float
    ) -> list[Offer]:
        assert call.agent_id is not None
        agent = self._agents[call.agent_id]
        self._transition(agent, agent_event, now, reason)
        agent.call_id = None
        call.agent_id = None
        call.transition(event)
        self._queue_add(call)  # same key: same place
        self._index_call(call)
        offers: list[Offer] = []
        self._dispatch_call(call, now, offers)
        self._dispatch_agent(agent, now, offers)
        return offers

    def ring_no_answer(self, call_id: str, now: float) -> list[Offer]:
        """Agent did not pick up: agent -> paused("no answer"), call back in its place."""
        call = self._call_for(call_id, CallEvent.NO_ANSWER)
        return self._back_in_place(
            call, CallEvent.NO_ANSWER, AgentEvent.NO_ANSWER, "no answer", now
        )

    def ring_failed(self, call_id: str, now: float) -> list[Offer]:
        """Agent's phone could not be rung: agent -> paused("unreachable"), call back in place."""
        call = self._call_for(call_id, CallEvent.RING_FAILED)
        return self._back_in_place(
            call, CallEvent.RING_FAILED, AgentEvent.RING_FAILED, "unreachable", now
        )

    def call_ended(self, call_id: str, now: float) -> list[Offer]:
        """Talk ended: the agent goes to wrap-up (per agent, per group or default), or ready."""
        call = self._call_for(call_id, CallEvent.END)
        assert call.agent_id is not None
        agent = self._agents[call.agent_id]
        wrap = agent.wrap_up_seconds
        if wrap is None:
            wrap = self.group_wrap_up_seconds.get(call.group, self.wrap_up_seconds)
        self._transition(agent, AgentEvent.CALL_END, now)
        agent.call_id = None
        if self.stats is not None:
            self.stats.call_ended(call_id, now, wrap)
        outcome = "callback_answered" if call.callback_number else "answered"
        self._finish(call, CallEvent.END, outcome)
        offers: list[Offer] = []
        if wrap <= 0:
            self._transition(agent, AgentEvent.WRAP_END, now)
            self._dispatch_agent(agent, now, offers)
        else:
            agent.wrap_until = now + wrap
            heapq.heappush(self._wrap_timers, (agent.wrap_until, next(self._seq), agent.agent_id))
        return offers

    def abandon(self, call_id: str, now: float) -> list[Offer]:
        """Caller hung up before being answered (waiting, on hold for a callback, or ringing)."""
        call = self._call_for(call_id, CallEvent.ABANDON)
        offers: list[Offer] = []
        agent: Agent | None = None
        if call.state is CallState.RINGING:
            assert call.agent_id is not None
            agent = self._agents[call.agent_id]
            self._transition(agent, AgentEvent.CALLER_GONE, now)
            agent.call_id = None
        else:
            self._unindex_call(call)
            self._queue_remove(call)
        if self.stats is not None:
            self.stats.call_abandoned(call_id, now)
        self._finish(call, CallEvent.ABANDON, "abandoned")
        if agent is not None:
            self._dispatch_agent(agent, now, offers)
        return offers

    def request_callback(self, call_id: str, number: str, now: float) -> list[Offer]:
        """The resident pressed 1 and hangs up; the call keeps its place in the queue."""
        call = self._call_for(call_id, CallEvent.REQUEST_CALLBACK)
        if not number:
            raise AcdError(f"call {call_id!r}: a callback needs a number")
        call.transition(CallEvent.REQUEST_CALLBACK)
        call.callback_number = number
        if self.stats is not None:
            self.stats.callback_requested(call_id, now)
        return []

    def restore_callback(
        self,
        call_id: str,
        *,
        language: str,
        group: str,
        number: str,
        enqueued_at: float,
        failed_attempts: int = 0,
        priority: int = 0,
        now: float,
    ) -> list[Offer]:
        """A callback requested before a restart waits again, in its place (by the time its
        call was queued), with the attempts that already failed counted.

        Not counted in the service-level figures: it was offered and requested before.
        """
        if call_id in self._calls or call_id in self._finished:
            raise AcdError(f"call {call_id!r} was already enqueued")
        if not language or not group or not number:
            raise AcdError(f"call {call_id!r}: language, group and number are required")
        call = Call(call_id, language, group, priority, enqueued_at, next(self._seq))
        call.callback_number = number
        call.callback_attempts = failed_attempts
        self._calls[call_id] = call
        self._queue_add(call)
        self._index_call(call)
        offers: list[Offer] = []
        self._dispatch_call(call, now, offers)
        return offers

    def callback_result(self, call_id: str, ok: bool, now: float) -> list[Offer]:
        """Outcome of calling the resident back for a reserved agent.

        ok: talk starts. Failure: the agent is free again; the call retries in its place after
        callback_retry_seconds, and after callback_max_attempts it becomes a FollowUp.
        """
        call = self._call_for(call_id, CallEvent.ANSWER if ok else CallEvent.CALLBACK_FAILED)
        if call.callback_number is None:
            raise AcdError(f"call {call_id!r} is not a callback")
        if ok:
            self._connect(call, now)
            return []
        assert call.agent_id is not None
        agent = self._agents[call.agent_id]
        self._transition(agent, AgentEvent.CALLER_GONE, now)
        agent.call_id = None
        call.agent_id = None
        call.callback_attempts += 1
        if call.callback_attempts >= self.callback_max_attempts:
            self._follow_ups.append(
                FollowUp(
                    call_id,
                    call.callback_number,
                    call.language,
                    call.group,
                    call.callback_attempts,
                    now,
                )
            )
            if self.stats is not None:
                self.stats.callback_failed(call_id, now)
            self._finish(call, CallEvent.GIVE_UP, "callback_failed")
        else:
            call.transition(CallEvent.CALLBACK_FAILED)
            call.retry_at = now + self.callback_retry_seconds
            self._queue_add(call)  # keeps its place while it waits to retry
            heapq.heappush(self._retry_timers, (call.retry_at, next(self._seq), call_id))
        offers: list[Offer] = []
        self._dispatch_agent(agent, now, offers)
        return offers

    def pop_follow_ups(self) -> list[FollowUp]:
        """Callbacks that gave up since the last call: open a case for each."""
        out, self._follow_ups = self._follow_ups, []
        return out

    def _finish(self, call: Call, event: CallEvent, outcome: str) -> None:
        call.transition(event)
        call.outcome = outcome
        call.agent_id = None
        self._widenable.pop(call.call_id, None)
        del self._calls[call.call_id]
        self._finished[call.call_id] = call
        if len(self._finished) > self.FINISHED_KEPT:
            self._finished.popitem(last=False)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Offer]:
        """Apply everything due by now: wrap-ups ending, callback retries, widening steps."""
        offers: list[Offer] = []
        while self._wrap_timers and self._wrap_timers[0][0] <= now:
            due, _, agent_id = heapq.heappop(self._wrap_timers)
            agent = self._agents[agent_id]
            if agent.state is AgentState.WRAP_UP and agent.wrap_until == due:
                self._transition(agent, AgentEvent.WRAP_END, now)
                self._dispatch_agent(agent, now, offers)
        while self._retry_timers and self._retry_timers[0][0] <= now:
            due, _, call_id = heapq.heappop(self._retry_timers)
            call = self._calls.get(call_id)
            if call is not None and call.state is CallState.CALLBACK_HOLD and call.retry_at == due:
                call.transition(CallEvent.RETRY)
                call.retry_at = None
                self._index_call(call)
                self._dispatch_call(call, now, offers)
        while self._step_timers and self._step_timers[0][0] <= now:
            _, _, call_id, version = heapq.heappop(self._step_timers)
            call = self._calls.get(call_id)
            if call is not None and call.state is CallState.WAITING and call.version == version:
                self._widen(call)
                self._dispatch_call(call, now, offers)
        self._widen_at_risk(now, offers)
        return offers

    def _widen_at_risk(self, now: float, offers: list[Offer]) -> None:
        """Step down every waiting call whose target is at risk (target-driven policies)."""
        if not self._widenable:
            return
        # Oldest first, so two calls widening into the same free agent are served in order.
        candidates = sorted((self._calls[c] for c in self._widenable), key=lambda c: c.key)
        # Queues with nobody ready below their rung; agents are only taken during a sweep.
        nobody_ready: set[tuple[str, str, int]] = set()
        for call in candidates:
            if call.state is not CallState.WAITING:
                continue
            queue_rung = (call.language, call.group, call.rung)
            if queue_rung in nobody_ready:
                continue
            if not self._ready_on_wider_rung(call):
                nobody_ready.add(queue_rung)
            elif self._at_risk(call, now):
                self._widen(call)
                self._dispatch_call(call, now, offers)

    def next_deadline(self) -> float | None:
        """Earliest time a timer needs tick(); target widening also wants a periodic tick."""
        heads = [
            h[0][0]
            for h in (
                self._wrap_timers,
                self._step_timers,
                self._retry_timers,
                self._announce_timers,
            )
            if h
        ]
        return min(heads) if heads else None

    @property
    def wants_periodic_tick(self) -> bool:
        """True while some waiting call may still step down because of the target."""
        return bool(self._widenable)

    # ------------------------------------------------------------------ announcements

    def position(self, call_id: str, now: float) -> tuple[int, float]:
        """1-based position among calls of the same language and group, and expected wait."""
        call = self._call(call_id, CallState.WAITING, CallState.CALLBACK_HOLD)
        predicted = self._predicted_wait(call) if call.pools else math.inf
        return self._position(call), predicted

    def announcements(self, now: float) -> list[Announcement]:
        """Calls due an announcement now (every announce_period; at once when overflowing)."""
        out: list[Announcement] = []
        while self._announce_timers and self._announce_timers[0][0] <= now:
            _, _, call_id = heapq.heappop(self._announce_timers)
            call = self._calls.get(call_id)
            if call is None or call.callback_number:
                continue  # finished, or the resident hung up to be called back
            if call.state is CallState.WAITING:
                pos, wait = self.position(call_id, now)
                out.append(Announcement(call_id, pos, wait, call.overflow))
            if self.announce_period is not None:
                heapq.heappush(
                    self._announce_timers, (now + self.announce_period, next(self._seq), call_id)
                )
        return out
