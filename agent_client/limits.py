"""Login throttling: guessing passwords gets slow, a real agent with a typo barely notices.

Pure: time is passed in. Failures are counted per account name and per client address in a
sliding window; past the limit, that key must wait until its oldest failure leaves the window.
A success clears the account's count (not the address's: one address may serve many desks).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleLimits:
    window_seconds: float = 300.0
    per_name: int = 5  # wrong passwords for one account
    per_address: int = 20  # wrong passwords from one client, any account (password spraying)
    tracked_keys: int = 10_000  # memory bound: the least recently failed keys are forgotten


class LoginThrottle:
    def __init__(self, limits: ThrottleLimits | None = None) -> None:
        self.limits = limits or ThrottleLimits()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        return f"name:{name}", f"addr:{address}"

    def retry_after(self, name: str, address: str, now: float) -> float:
        """Seconds until a log-in may be tried again; 0 when it may be tried now."""
        waits = [0.0]
        for key, limit in zip(
            self.keys(name, address), (self.limits.per_name, self.limits.per_address), strict=True
        ):
            times = self._recent(key, now)
            if len(times) >= limit:
                waits.append(times[len(times) - limit] + self.limits.window_seconds - now)
        return max(waits)

    def failed(self, name: str, address: str, now: float) -> None:
        for key in self.keys(name, address):
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > self.limits.tracked_keys:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(self.keys(name, "")[0], None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.limits.window_seconds:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times
