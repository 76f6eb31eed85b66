"""The routing index: pools of agents who share skill minimums, with heaps of who is ready
and what waits.

A pool is a conjunction of skill minimums (for example lang:pl>=3 and group:roads>=4). Every
rung of a call's ladder maps to one or more pools; every agent knows the pools it belongs to.
Each pool keeps
- a heap of ready agents keyed by idle start (longest idle first), and
- a heap of waiting calls keyed by (-priority, enqueue time) (best call first),
both with lazy deletion. So a freed agent looks only at the heads of its own pools, and a new
call only at the heads of its rung's pools: nothing scans every agent for every call.

Only the engine calls in here. The index reads the engine's agents and calls and writes only
its own parts of them: agent.pools and agent.ready_token, call.pools and call.version.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from acd.agents import BUSY_STATES, Agent
from acd.calls import Call, CallState
from acd.widening import WideningPolicy

Atoms = tuple[tuple[str, int], ...]
ReadyEntry = tuple[float, int, str, int]  # (idle since, seq, agent id, ready token)
CallEntry = tuple[int, float, int, str, int]  # (*call key, call id, call version)


@dataclass
class Pool:
    pool_id: int
    atoms: Atoms
    members: set[str] = field(default_factory=set)
    ready: list[ReadyEntry] = field(default_factory=list)
    ready_live: int = 0
    calls: list[CallEntry] = field(default_factory=list)
    calls_live: int = 0
    busy: int = 0  # members ringing, on call or in wrap-up

    def admits(self, skills: Mapping[str, int]) -> bool:
        return all(skills.get(skill, 0) >= level for skill, level in self.atoms)


class PoolIndex:
    def __init__(
        self,
        policy: WideningPolicy,
        neighbours: Mapping[str, tuple[str, ...]],
        agents: Mapping[str, Agent],
        calls: Mapping[str, Call],
    ) -> None:
        self._policy = policy
        self._neighbours = neighbours
        self._agents = agents
        self._calls = calls
        self._seq = itertools.count()
        self._pools: list[Pool] = []
        self._pool_by_atoms: dict[Atoms, int] = {}
        self._rung_pools: dict[tuple[str, str, int], tuple[int, ...]] = {}

    # ------------------------------------------------------------------ membership

    def place(self, agent: Agent) -> None:
        """Join every pool the agent's skills admit it to and leave the others."""
        for pool in self._pools:
            inside = agent.agent_id in pool.members
            if pool.admits(agent.skills) and not inside:
                self._join(agent, pool)
            elif inside and not pool.admits(agent.skills):
                self._leave(agent, pool)

    def _pool_for(self, atoms: Atoms) -> int:
        pool_id = self._pool_by_atoms.get(atoms)
        if pool_id is not None:
            return pool_id
        pool = Pool(len(self._pools), atoms)
        self._pools.append(pool)
        self._pool_by_atoms[atoms] = pool.pool_id
        # One pass over the agents when a new skill combination first appears, never per call.
        for agent in self._agents.values():
            if pool.admits(agent.skills):
                self._join(agent, pool)
        return pool.pool_id

    def _join(self, agent: Agent, pool: Pool) -> None:
        pool.members.add(agent.agent_id)
        agent.pools.append(pool.pool_id)
        if agent.state in BUSY_STATES:
            pool.busy += 1
        if agent.available:
            pool.ready_live += 1
            self._push_ready(pool, agent)

    def _leave(self, agent: Agent, pool: Pool) -> None:
        pool.members.discard(agent.agent_id)
        agent.pools.remove(pool.pool_id)
        if agent.state in BUSY_STATES:
            pool.busy -= 1
        if agent.available:
            pool.ready_live -= 1  # its heap entry goes stale: the pool id check rejects it

    def rung_pool_ids(self, language: str, group: str, rung: int) -> tuple[int, ...]:
        """The pools whose agents may take a call of this language and group at this rung."""
        cache_key = (language, group, rung)
        cached = self._rung_pools.get(cache_key)
        if cached is not None:
            return cached
        spec = self._policy.ladder[rung]
        lang_atom = (f"lang:{language}", spec.lang_min)
        if spec.group_min is None:
            atom_sets: list[Atoms] = [(lang_atom,)]
        else:
            groups = [group, *(self._neighbours.get(group, ()) if spec.neighbours else ())]
            atom_sets = [tuple(sorted((lang_atom, (f"group:{g}", spec.group_min)))) for g in groups]
        ids = tuple(dict.fromkeys(self._pool_for(a) for a in atom_sets))
        self._rung_pools[cache_key] = ids
        return ids

    def members(self, pool_ids: tuple[int, ...]) -> set[str]:
        return set().union(*(self._pools[p].members for p in pool_ids))

    def busy(self, pool_ids: tuple[int, ...]) -> int:
        """Members of these pools ringing, on a call or in wrap-up (counted once per pool)."""
        return sum(self._pools[p].busy for p in pool_ids)

    # ------------------------------------------------------------------ agents

    def busy_changed(self, agent: Agent, delta: int) -> None:
        for pool_id in agent.pools:
            self._pools[pool_id].busy += delta

    def availability_changed(self, agent: Agent, was_available: bool) -> None:
        if agent.available and not was_available:
            agent.ready_token += 1
            for pool_id in agent.pools:
                pool = self._pools[pool_id]
                pool.ready_live += 1
                self._push_ready(pool, agent)
        elif was_available and not agent.available:
            for pool_id in agent.pools:
                self._pools[pool_id].ready_live -= 1

    def _push_ready(self, pool: Pool, agent: Agent) -> None:
        heapq.heappush(
            pool.ready, (agent.since, next(self._seq), agent.agent_id, agent.ready_token)
        )
        if len(pool.ready) > 2 * pool.ready_live + 64:
            pool.ready = [e for e in pool.ready if self._ready_entry_valid(pool, e)]
            heapq.heapify(pool.ready)

    def _ready_entry_valid(self, pool: Pool, entry: ReadyEntry) -> bool:
        agent = self._agents.get(entry[2])
        return (
            agent is not None
            and agent.available
            and agent.ready_token == entry[3]
            and entry[2] in pool.members
        )

    def best_agent(self, pool_ids: tuple[int, ...]) -> Agent | None:
        """The longest-idle available agent of these pools."""
        best: ReadyEntry | None = None
        for pool_id in pool_ids:
            pool = self._pools[pool_id]
            heap = pool.ready
            while heap and not self._ready_entry_valid(pool, heap[0]):
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best):
                best = heap[0]
        return None if best is None else self._agents[best[2]]

    # ------------------------------------------------------------------ calls

    def add_call(self, call: Call) -> None:
        """Put a waiting call into the pools of its current rung."""
        call.pools = self.rung_pool_ids(call.language, call.group, call.rung)
        entry = (*call.key, call.call_id, call.version)
        for pool_id in call.pools:
            pool = self._pools[pool_id]
            heapq.heappush(pool.calls, entry)
            pool.calls_live += 1
            if len(pool.calls) > 2 * pool.calls_live + 64:
                pool.calls = [e for e in pool.calls if self._call_entry_valid(pool_id, e)]
                heapq.heapify(pool.calls)

    def remove_call(self, call: Call) -> None:
        """Take the call out of its pools; its heap entries go stale with the version."""
        for pool_id in call.pools:
            self._pools[pool_id].calls_live -= 1
        call.pools = ()
        call.version += 1

    def _call_entry_valid(self, pool_id: int, entry: CallEntry) -> bool:
        call = self._calls.get(entry[3])
        return (
            call is not None
            and call.state is CallState.WAITING
            and call.version == entry[4]
            and pool_id in call.pools
        )

    def best_call(self, agent: Agent) -> Call | None:
        """The best waiting call in any of the agent's pools."""
        best: CallEntry | None = None
        for pool_id in agent.pools:
            heap = self._pools[pool_id].calls
            while heap and not self._call_entry_valid(pool_id, heap[0]):
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best):
                best = heap[0]
        return None if best is None else self._calls[best[3]]

    # ------------------------------------------------------------------ self-check

    def check_invariants(self) -> None:
        """Raise AssertionError if the pools disagree with the agents and calls."""
        for pool in self._pools:
            live_calls = {e[3] for e in pool.calls if self._call_entry_valid(pool.pool_id, e)}
            assert len(live_calls) == pool.calls_live, (pool.pool_id, live_calls, pool.calls_live)
            ready = {a for a in pool.members if self._agents[a].available}
            assert len(ready) == pool.ready_live, pool.pool_id
            valid_ready = {e[2] for e in pool.ready if self._ready_entry_valid(pool, e)}
            assert ready == valid_ready, pool.pool_id
            assert not (ready and live_calls), f"pool {pool.atoms}: ready agent and waiting call"
            busy = sum(self._agents[a].state in BUSY_STATES for a in pool.members)
            assert busy == pool.busy, pool.pool_id
