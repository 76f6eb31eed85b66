"""What is learnt about a call, as facts in order: the pure core of the call-record journal.

A fact is one write to the call record (the row arrived, columns updated, an event on the
trail), numbered in the order it was learnt and carrying its own idempotency key, so applying
it twice leaves the database as applying it once. FactQueue holds the facts not yet applied,
in order, up to a bound. No I/O and no clock here: times come in with the facts.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

FactKind = Literal["arrived", "update", "event"]
FACT_KINDS: frozenset[str] = frozenset({"arrived", "update", "event"})

# About 10 facts a call: 100,000 pending facts are some 10,000 calls, days of a city's
# traffic with the database away (a fact is some 300 bytes on disk: ~30 MB).
DEFAULT_BOUND = 100_000

_TIME_TAG = "$time"  # a datetime in a fact's data, as {"$time": "<ISO 8601>"}


@dataclass(frozen=True)
class Fact:
    seq: int  # order of learning, from 1; facts are applied strictly in this order
    kind: FactKind
    call_id: uuid.UUID
    at: datetime  # when it was learnt (an event's time on the trail)
    data: dict[str, Any] = field(default_factory=dict)
    # The idempotency key: an event is stored once per key however often it is replayed.
    key: uuid.UUID = field(default_factory=uuid.uuid4)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_TIME_TAG: value.isoformat()}
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_value(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TIME_TAG}:
            return datetime.fromisoformat(value[_TIME_TAG])
        return {k: _decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def encode(fact: Fact) -> str:
    """One line of the journal (no newline), JSON."""
    return json.dumps(
        {
            "seq": fact.seq,
            "kind": fact.kind,
            "call": str(fact.call_id),
            "at": fact.at.isoformat(),
            "key": str(fact.key),
            "data": _encode_value(fact.data),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


class BadFact(ValueError):
    """A journal line that is not a fact (e.g. cut short by a crash mid-write)."""


def decode(line: str) -> Fact:
    try:
        raw = json.loads(line)
        kind = raw["kind"]
        if kind not in FACT_KINDS:
            raise BadFact(f"unknown fact kind {kind!r}")
        at = datetime.fromisoformat(raw["at"])
        return Fact(
            seq=int(raw["seq"]),
            kind=kind,
            call_id=uuid.UUID(raw["call"]),
            at=at if at.tzinfo else at.replace(tzinfo=UTC),
            data=_decode_value(raw.get("data") or {}),
            key=uuid.UUID(raw["key"]),
        )
    except BadFact:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BadFact(f"not a fact: {exc}") from exc


@dataclass
class Replayed:
    """What a journal holds that the database may not have yet."""

    facts: list[Fact]
    applied_through: int  # the database has every fact up to this number
    last_seq: int  # the highest number seen (applied or not): new facts continue after it
    bad_lines: list[int]  # 1-based numbers of lines that were not facts


def replay(lines: Iterable[str], applied_through: int) -> Replayed:
    """The facts after `applied_through`, in order, from the journal's lines."""
    facts: list[Fact] = []
    bad: list[int] = []
    last = applied_through
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            fact = decode(line)
        except BadFact:
            bad.append(number)
            continue
        last = max(last, fact.seq)
        if fact.seq > applied_through:
            facts.append(fact)
    facts.sort(key=lambda f: f.seq)
    return Replayed(facts, applied_through, last, bad)


class FactQueue:
    """The facts learnt and not yet applied, oldest first, at most `bound` of them.

    admit() never blocks: at the bound it refuses (returns None) and the caller logs the fact
    in full. The one writer takes facts from the head and marks them applied in order.
    """

    def __init__(self, *, bound: int = DEFAULT_BOUND, last_seq: int = 0) -> None:
        if bound < 1:
            raise ValueError("the bound must be at least 1")
        self.bound = bound
        self.last_seq = last_seq
        self.applied_through = last_seq
        self.refused = 0
        self._pending: deque[Fact] = deque()
        self._pending_by_call: dict[uuid.UUID, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Fact]:
        return iter(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.bound

    def restore(self, replayed: Replayed) -> None:
        """What a journal held at start-up (already numbered), before anything new is admitted."""
        if self._pending:
            raise ValueError("restore() comes before any new fact")
        self.applied_through = replayed.applied_through
        for fact in replayed.facts:
            if fact.seq > self.applied_through:
                self._push(fact)
        self.last_seq = max(self.last_seq, replayed.last_seq, self.applied_through)

    def admit(
        self,
        kind: FactKind,
        call_id: uuid.UUID,
        at: datetime,
        data: Mapping[str, Any] | None = None,
    ) -> Fact | None:
        """The next fact, numbered; None when the queue is at its bound (nothing kept)."""
        if self.full:
            self.refused += 1
            return None
        self.last_seq += 1
        fact = Fact(self.last_seq, kind, call_id, at, dict(data or {}))
        self._push(fact)
        return fact

    def head(self, limit: int = 1) -> list[Fact]:
        return [self._pending[i] for i in range(min(limit, len(self._pending)))]

    def applied(self, fact: Fact) -> None:
        """The head fact is in the database (or was given up): the next one is the head."""
        if not self._pending or self._pending[0].seq != fact.seq:
            raise ValueError(f"fact {fact.seq} is not the head of the queue")
        self._pending.popleft()
        self.applied_through = fact.seq
        left = self._pending_by_call[fact.call_id] - 1
        if left:
            self._pending_by_call[fact.call_id] = left
        else:
            del self._pending_by_call[fact.call_id]

    def pending_for(self, call_id: uuid.UUID) -> int:
        """How many facts about this call are not applied yet."""
        return self._pending_by_call.get(call_id, 0)

    def _push(self, fact: Fact) -> None:
        self._pending.append(fact)
        self._pending_by_call[fact.call_id] = self._pending_by_call.get(fact.call_id, 0) + 1


def backoff(failures: int, *, first: float = 0.2, longest: float = 5.0) -> float:
    """Seconds to wait before trying the database again after `failures` failures in a row."""
    if failures <= 0:
        return 0.0
    return min(longest, first * 2 ** (failures - 1))
