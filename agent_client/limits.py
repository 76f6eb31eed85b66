"""Log-in throttling: guessing passwords gets slow, and nobody can use it to lock others out.

Pure: time is passed in. Wrong passwords are counted in a sliding window under three keys:

- the account at one address (`per_pair`): a guesser at one account from one place, or a
  real agent's typos;
- the address, whatever the account (`per_address`): one client trying many names (spraying);
- the account, whatever the address (`per_name`): many clients guessing one account.

Attempts still being checked count as if they will fail, so a burst of parallel guesses gets
no more checks than a patient guesser (the rest are told to wait at once).

A limit must not become a weapon. The contact centre's desks may all reach us from one NAT
address, and agents' names are easy to learn; a guesser there (or anywhere) must not lock the
floor out. So an account that logged in from an address recently (`trust_seconds`) is *known*
there: the address and account limits, which a stranger can fill, do not apply to it; only its
own per-address limit does (which only someone guessing that account from that place can fill).
What an exhausted address still blocks is what spraying needs: guesses at names that have not
logged in from it (unknown names, other agents' accounts).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

# How long to wait when only attempts still in flight fill a limit: they end within moments.
IN_FLIGHT_WAIT = 1.0


@dataclass(frozen=True)
class ThrottleLimits:
    window_seconds: float = 300.0
    per_pair: int = 5  # wrong passwords for one account from one address
    per_address: int = 20  # wrong passwords from one address, any account (spraying)
    per_name: int = 20  # wrong passwords for one account, any address (distributed guessing)
    trust_seconds: float = 30 * 24 * 3600.0  # an account that logged in from an address: known
    tracked_keys: int = 10_000  # memory bound: the least recently failed keys are forgotten
    trusted_pairs: int = 10_000  # memory bound: the least recently trusted pairs are forgotten


class LoginThrottle:
    def __init__(self, limits: ThrottleLimits | None = None) -> None:
        self.limits = limits or ThrottleLimits()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._in_flight: Counter[str] = Counter()
        self._trusted: OrderedDict[str, float] = OrderedDict()  # pair key -> last success

    @staticmethod
    def _pair(name: str, address: str) -> str:
        return f"pair:{name}\x00{address}"

    def _limited_keys(self, name: str, address: str, now: float) -> list[tuple[str, int]]:
        """The keys that limit this attempt, with their limits."""
        pair = self._pair(name, address)
        keys = [(pair, self.limits.per_pair)]
        if not self.known(name, address, now):
            keys += [(f"addr:{address}", self.limits.per_address),
                     (f"name:{name}", self.limits.per_name)]  # fmt: skip
        return keys

    def _counted_keys(self, name: str, address: str) -> list[str]:
        """Every key an attempt counts under, whether or not it limits this attempt."""
        return [self._pair(name, address), f"addr:{address}", f"name:{name}"]

    def known(self, name: str, address: str, now: float) -> bool:
        """Whether the account logged in from this address within trust_seconds."""
        at = self._trusted.get(self._pair(name, address))
        return at is not None and now - at < self.limits.trust_seconds

    def retry_after(self, name: str, address: str, now: float) -> float:
        """Seconds until a log-in may be tried; 0 when it may be tried now."""
        waits = [0.0]
        for key, limit in self._limited_keys(name, address, now):
            times = self._recent(key, now)
            in_flight = self._in_flight[key]
            if len(times) + in_flight < limit:
                continue
            # The oldest failures that must leave the window before one more attempt fits.
            excess = len(times) + in_flight - limit
            if excess < len(times):
                waits.append(times[excess] + self.limits.window_seconds - now)
            else:
                waits.append(IN_FLIGHT_WAIT)
        return max(waits)

    def begin(self, name: str, address: str, now: float) -> float:
        """0 when the attempt may go ahead (it is in flight until end()); else seconds to wait."""
        wait = self.retry_after(name, address, now)
        if wait <= 0:
            self._in_flight.update(self._counted_keys(name, address))
        return wait

    def end(self, name: str, address: str, now: float, *, password_right: bool | None) -> None:
        """An attempt begun is over: the password was right, wrong, or never checked (None)."""
        keys = self._counted_keys(name, address)
        self._in_flight.subtract(keys)
        for key in keys:
            if self._in_flight[key] <= 0:
                del self._in_flight[key]
        if password_right:
            self._succeeded(name, address, now)
        elif password_right is not None:
            self._failed(keys, now)

    def _succeeded(self, name: str, address: str, now: float) -> None:
        """Trust the pair and forget its typos; not the address's or the account's failures
        (one address serves many desks; an account may be guessed at from elsewhere)."""
        pair = self._pair(name, address)
        self._failures.pop(pair, None)
        self._trusted[pair] = now
        self._trusted.move_to_end(pair)
        while len(self._trusted) > self.limits.trusted_pairs:
            self._trusted.popitem(last=False)

    def _failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > self.limits.tracked_keys:
            self._failures.popitem(last=False)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.limits.window_seconds:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times
