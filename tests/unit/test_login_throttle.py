"""Log-in throttling: guessing is slow, parallel guesses get no more checks than patient ones,
and no guesser can lock other agents out (one address may be the whole floor's NAT)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.limits import IN_FLIGHT_WAIT, LoginThrottle, ThrottleLimits

FLOOR = "10.0.0.1"  # the contact centre's NAT address: every desk looks like this one


def attempt(throttle: LoginThrottle, name: str, address: str, now: float, *, right: bool) -> bool:
    """One whole attempt; False when it was told to wait (nothing was checked)."""
    if throttle.begin(name, address, now) > 0:
        return False
    throttle.end(name, address, now, password_right=right)
    return True


def test_five_wrong_passwords_make_the_sixth_attempt_wait() -> None:
    throttle = LoginThrottle(ThrottleLimits(window_seconds=300, per_pair=5))
    for second in range(5):
        assert attempt(throttle, "ola", FLOOR, second, right=False)
    # the oldest failure (t=0) leaves the window at t=300
    assert throttle.retry_after("ola", FLOOR, now=10) == pytest.approx(290)
    assert not attempt(throttle, "ola", FLOOR, 10, right=True)  # not even checked
    assert throttle.retry_after("ola", FLOOR, now=300.5) == 0
    assert attempt(throttle, "ola", FLOOR, 300.5, right=True)


def test_parallel_guesses_count_while_they_are_checked() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_pair=5, per_address=20, per_name=20))
    admitted = [throttle.begin("ola", "203.0.113.9", 0) == 0 for _ in range(40)]
    assert admitted.count(True) == 5  # 40 at once: 5 are checked, 35 wait
    assert throttle.retry_after("ola", "203.0.113.9", 0) == IN_FLIGHT_WAIT
    for _ in range(5):
        throttle.end("ola", "203.0.113.9", 1, password_right=False)
    assert throttle.retry_after("ola", "203.0.113.9", 2) == pytest.approx(299)


def test_an_attempt_that_was_never_decided_is_no_failure() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_pair=1))
    assert throttle.begin("ola", FLOOR, 0) == 0
    assert throttle.begin("ola", FLOOR, 0) == IN_FLIGHT_WAIT
    throttle.end("ola", FLOOR, 0, password_right=None)  # e.g. the database did not answer
    assert throttle.retry_after("ola", FLOOR, 1) == 0


def test_spraying_from_one_address_does_not_lock_out_the_agents_who_work_there() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_pair=5, per_address=20, per_name=20))
    assert attempt(throttle, "ola", FLOOR, 0, right=True)  # ola works here
    for n in range(20):  # a guesser on the same NAT tries names one after another
        assert attempt(throttle, f"guess{n}", FLOOR, 1 + n, right=False)
    assert not attempt(throttle, "guess99", FLOOR, 30, right=False)  # new names: wait
    assert not attempt(throttle, "jan", FLOOR, 30, right=True)  # an account new here: wait
    assert attempt(throttle, "ola", FLOOR, 30, right=True)  # ola is not locked out
    assert attempt(throttle, "jan", "198.51.100.7", 30, right=True)  # nor anyone elsewhere


def test_a_known_account_still_has_its_own_limit_at_that_address() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_pair=3))
    assert attempt(throttle, "ola", FLOOR, 0, right=True)
    for second in range(1, 4):
        assert attempt(throttle, "ola", FLOOR, second, right=False)
    assert throttle.retry_after("ola", FLOOR, 5) > 0


def test_guessing_one_account_from_many_addresses_spares_its_owners_desk() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_pair=5, per_address=20, per_name=10))
    assert attempt(throttle, "ola", FLOOR, 0, right=True)
    for n in range(10):
        assert attempt(throttle, "ola", f"192.0.2.{n}", 1 + n, right=False)
    assert not attempt(throttle, "ola", "192.0.2.99", 20, right=False)  # a new address: wait
    assert attempt(throttle, "ola", FLOOR, 20, right=True)  # ola at her desk: in
    assert attempt(throttle, "jan", "192.0.2.99", 20, right=True)  # other accounts: in


def test_a_right_password_forgets_the_typos_of_that_desk_only() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_pair=2, per_address=3, per_name=50))
    assert attempt(throttle, "ola", FLOOR, 0, right=False)
    assert attempt(throttle, "ola", FLOOR, 1, right=True)
    assert attempt(throttle, "ola", FLOOR, 2, right=False)  # the count started again
    assert attempt(throttle, "piotr", FLOOR, 3, right=False)
    assert not attempt(throttle, "kasia", FLOOR, 4, right=True)  # the address's count did not


def test_trust_lapses() -> None:
    throttle = LoginThrottle(ThrottleLimits(per_address=1, trust_seconds=100, window_seconds=500))
    assert attempt(throttle, "ola", FLOOR, 0, right=True)
    assert attempt(throttle, "guess", FLOOR, 1, right=False)
    assert throttle.retry_after("ola", FLOOR, 50) == 0
    assert throttle.retry_after("ola", FLOOR, 150) > 0  # not seen here for too long


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.sampled_from("xyz"), st.booleans()),
        max_size=300,
    )
)
def test_memory_stays_bounded(attempts: list[tuple[str, str, bool]]) -> None:
    throttle = LoginThrottle(ThrottleLimits(tracked_keys=6, trusted_pairs=4, window_seconds=1e9))
    for second, (name, address, right) in enumerate(attempts):
        if throttle.begin(name, address, second) == 0:
            throttle.end(name, address, second, password_right=right)
    assert len(throttle._failures) <= 6 and len(throttle._trusted) <= 4
    assert not throttle._in_flight  # nothing is left in flight
