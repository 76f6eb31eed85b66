"""The call-record journal's pure core: facts, their encoding, replay, the bounded queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from calls.facts import (
    BadFact,
    Fact,
    FactQueue,
    Replayed,
    backoff,
    decode,
    encode,
    replay,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CALL = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER = uuid.UUID("00000000-0000-4000-8000-000000000002")


def test_a_fact_survives_encoding_with_its_times_and_key() -> None:
    fact = Fact(7, "update", CALL, T0, {"ended_at": T0 + timedelta(seconds=3), "offers": 2,
                                         "outcome": "answered", "agent": None})  # fmt: skip
    back = decode(encode(fact))
    assert back == fact
    assert isinstance(back.data["ended_at"], datetime)


def test_event_details_keep_nested_values() -> None:
    fact = Fact(1, "event", CALL, T0, {"kind": "announced",
                                        "detail": {"prompts": ["a", "b"], "at": T0}})  # fmt: skip
    assert decode(encode(fact)).data["detail"] == {"prompts": ["a", "b"], "at": T0}


@pytest.mark.parametrize(
    "line",
    ['{"seq": 3, "kind": "upd', "not json", '{"seq": 1, "kind": "delete", "call": "x"}',
     '{"seq": "x", "kind": "event", "call": "00000000-0000-4000-8000-000000000001"}'],
)  # fmt: skip
def test_a_line_that_is_not_a_fact_is_refused(line: str) -> None:
    with pytest.raises(BadFact):
        decode(line)


def _lines(*facts: Fact) -> list[str]:
    return [encode(f) for f in facts]


def test_replay_returns_what_follows_the_applied_mark_in_order() -> None:
    facts = [Fact(n, "event", CALL, T0, {"kind": f"k{n}"}) for n in range(1, 6)]
    lines = _lines(facts[0], facts[1], facts[3], facts[2], facts[4])
    replayed = replay(lines, applied_through=2)
    assert [f.seq for f in replayed.facts] == [3, 4, 5]
    assert (replayed.applied_through, replayed.last_seq, replayed.bad_lines) == (2, 5, [])


def test_replay_skips_a_line_cut_short_by_a_crash() -> None:
    good = Fact(1, "event", CALL, T0, {"kind": "a"})
    cut = encode(Fact(2, "event", CALL, T0, {"kind": "b"}))[:20]
    replayed = replay([encode(good), cut, ""], applied_through=0)
    assert [f.seq for f in replayed.facts] == [1]
    assert replayed.bad_lines == [2]


def test_the_queue_numbers_facts_in_order_and_counts_them_per_call() -> None:
    queue = FactQueue(bound=10)
    a = queue.admit("arrived", CALL, T0, {"caller": "1"})
    b = queue.admit("event", OTHER, T0)
    c = queue.admit("update", CALL, T0, {"outcome": "answered"})
    assert a and b and c and [a.seq, b.seq, c.seq] == [1, 2, 3]
    assert (queue.pending_for(CALL), queue.pending_for(OTHER), len(queue)) == (2, 1, 3)
    queue.applied(a)
    assert queue.pending_for(CALL) == 1 and queue.head() == [b]
    assert queue.applied_through == 1


def test_facts_are_applied_only_from_the_head() -> None:
    queue = FactQueue(bound=10)
    queue.admit("event", CALL, T0)
    second = queue.admit("event", CALL, T0)
    assert second is not None
    with pytest.raises(ValueError):
        queue.applied(second)


def test_at_the_bound_new_facts_are_refused_not_waited_for() -> None:
    queue = FactQueue(bound=2)
    first = queue.admit("event", CALL, T0)
    assert queue.admit("event", CALL, T0) is not None
    assert queue.full
    assert queue.admit("event", CALL, T0) is None
    assert queue.refused == 1 and len(queue) == 2
    assert first is not None
    queue.applied(first)  # room again
    refused_then_kept = queue.admit("event", CALL, T0)
    assert refused_then_kept is not None and refused_then_kept.seq == 3


def test_restored_facts_come_first_and_new_ones_continue_the_numbers() -> None:
    old = [Fact(n, "event", CALL, T0, {"kind": "k"}) for n in (4, 5)]
    queue = FactQueue(bound=10)
    queue.restore(Replayed(old, applied_through=3, last_seq=5, bad_lines=[]))
    new = queue.admit("event", OTHER, T0)
    assert new is not None and new.seq == 6
    assert [f.seq for f in queue] == [4, 5, 6]
    assert queue.applied_through == 3


def test_an_emptied_journal_still_continues_the_numbers() -> None:
    queue = FactQueue()
    queue.restore(Replayed([], applied_through=41, last_seq=41, bad_lines=[]))
    fact = queue.admit("event", CALL, T0)
    assert fact is not None and fact.seq == 42


def test_every_fact_has_its_own_idempotency_key() -> None:
    queue = FactQueue()
    keys = {f.key for f in (queue.admit("event", CALL, T0) for _ in range(100)) if f}
    assert len(keys) == 100


def test_backoff_grows_and_is_capped() -> None:
    assert backoff(0) == 0.0
    waits = [backoff(n) for n in range(1, 10)]
    assert waits == sorted(waits) and waits[0] == 0.2 and max(waits) == 5.0
