"""What the simulated city does: who calls when and about what, and how agents behave.

Pure: every function takes its random generator, so a seeded run is the same run. The
weights follow a city contact centre's usual mix (mostly Polish, mostly roads and waste).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# Shares of calls, not probabilities that must sum to one: random.choices normalises.
LANGUAGE_MIX: Mapping[str, float] = {"pl": 0.88, "en": 0.12}
GROUP_MIX: Mapping[str, float] = {"roads": 0.38, "waste": 0.34, "noise": 0.16, "other": 0.12}

# What a simulated agent writes into the case, per service group.
CASE_NOTES: Mapping[str, tuple[str, ...]] = {
    "roads": (
        "Street light out",
        "Pothole in the carriageway",
        "Traffic lights not working",
        "Broken pavement slab",
    ),
    "waste": (
        "Bins not emptied this week",
        "Illegal dumping next to the garages",
        "Overflowing litter bin at the bus stop",
    ),
    "noise": (
        "Loud music late at night",
        "Car parked on the pavement",
        "Building works outside permitted hours",
    ),
    "other": (
        "Question about office opening hours",
        "How to apply for a parking permit",
        "Lost property",
    ),
}
CALLER_POOL = 3000
STREETS = (
    "Marszałkowska",
    "Puławska",
    "Grójecka",
    "Targowa",
    "Świętokrzyska",
    "Wolska",
    "Mokotowska",
    "Nowy Świat",
)


@dataclass(frozen=True)
class CallMix:
    """How residents behave, apart from when they call."""

    languages: Mapping[str, float] = field(default_factory=lambda: dict(LANGUAGE_MIX))
    groups: Mapping[str, float] = field(default_factory=lambda: dict(GROUP_MIX))
    # Residents who give up if nobody answers in time; the others wait for the agent.
    impatient_share: float = 0.15
    # Seconds an impatient resident waits once queued before hanging up.
    patience_seconds: tuple[float, float] = (10.0, 60.0)
    # Seconds from the answer to the language key, then to the service group key.
    first_key_delay: tuple[float, float] = (1.0, 3.0)
    next_key_delay: tuple[float, float] = (1.5, 4.0)


@dataclass(frozen=True)
class ResidentCall:
    """One simulated resident's call: when it starts, what is pressed, how long they wait."""

    at: float  # seconds from the start of the run
    caller: str
    language: str
    group: str
    keys: tuple[tuple[float, str], ...]  # (seconds before the key, key)
    # Seconds the resident waits in the queue before hanging up; None: until the agent ends.
    patience: float | None

    @property
    def ivr_seconds(self) -> float:
        return sum(delay for delay, _ in self.keys)

    @property
    def hang_up_after(self) -> float | None:
        """Seconds after the answer at which the resident hangs up, if they are impatient."""
        return None if self.patience is None else self.ivr_seconds + self.patience


def arrival_times(
    rate_per_hour: float, seconds: float, rng: random.Random, *, first_at: float | None = None
) -> Iterator[float]:
    """A Poisson process: exponential gaps with mean 3600/rate, up to `seconds` into the run.

    `first_at` pins the first arrival (a demo should not open with minutes of silence); the
    process is memoryless, so the arrivals after it are still Poisson.
    """
    if rate_per_hour <= 0:
        raise ValueError("the rate must be above 0 calls an hour")
    at = 0.0
    if first_at is not None and first_at < seconds:
        at = first_at
        yield at
    while True:
        at += rng.expovariate(rate_per_hour / 3600.0)
        if at >= seconds:
            return
        yield at


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def resident_calls(
    rng: random.Random,
    *,
    rate_per_hour: float,
    seconds: float,
    language_keys: Mapping[str, str],
    group_keys: Mapping[str, str],
    mix: CallMix | None = None,
    first_at: float | None = None,
) -> Iterator[ResidentCall]:
    """The run's calls in time order. `*_keys` map a language or group code to its IVR key."""
    mix = mix or CallMix()
    for code in (*mix.languages, *mix.groups):
        if code not in language_keys and code not in group_keys:
            raise ValueError(f"the IVR has no key for {code!r}")
    for at in arrival_times(rate_per_hour, seconds, rng, first_at=first_at):
        language = _pick(rng, mix.languages)
        group = _pick(rng, mix.groups)
        keys = (
            (round(rng.uniform(*mix.first_key_delay), 2), language_keys[language]),
            (round(rng.uniform(*mix.next_key_delay), 2), group_keys[group]),
        )
        patience = (
            round(rng.uniform(*mix.patience_seconds), 1)
            if rng.random() < mix.impatient_share
            else None
        )
        # Numbers from a limited pool, so now and then a resident calls again (the pop shows it).
        caller = f"4860{rng.randrange(CALLER_POOL):07d}"
        yield ResidentCall(round(at, 3), caller, language, group, keys, patience)


@dataclass(frozen=True)
class AgentHabits:
    """How a simulated agent works: answer delay, talk time, the odd pause."""

    answer_delay: tuple[float, float] = (1.0, 4.0)
    # Talk time: a gamma distribution (mean shape * scale = 60 s), clipped to these bounds.
    talk_shape: float = 2.0
    talk_scale: float = 30.0
    talk_bounds: tuple[float, float] = (15.0, 180.0)
    pause_share: float = 0.15  # of calls followed by a pause
    pause_seconds: tuple[float, float] = (20.0, 60.0)
    pause_reasons: tuple[str, ...] = ("break", "coaching", "paperwork")

    def draw_answer_delay(self, rng: random.Random) -> float:
        return rng.uniform(*self.answer_delay)

    def draw_talk_seconds(self, rng: random.Random) -> float:
        low, high = self.talk_bounds
        return min(high, max(low, rng.gammavariate(self.talk_shape, self.talk_scale)))

    def draw_pause(self, rng: random.Random) -> tuple[str, float] | None:
        """A pause (reason, seconds) after a call, or None to stay ready."""
        if rng.random() >= self.pause_share:
            return None
        return rng.choice(self.pause_reasons), rng.uniform(*self.pause_seconds)


def case_note(rng: random.Random, group: str) -> tuple[str, str]:
    """(description, address) an agent writes for a call about `group`."""
    description = rng.choice(CASE_NOTES.get(group, CASE_NOTES["other"]))
    return description, f"{rng.choice(STREETS)} {rng.randrange(1, 120)}"


def simulated_agent_skills(index: int, languages: list[str], groups: list[str]) -> dict[str, int]:
    """Skills of the `index`-th simulated agent (0-based): every agent speaks the first
    language; every other one the second too; each is strong in a different pair of groups
    and knows one more a little, so a few agents together cover the whole menu."""
    skills = {f"lang:{languages[0]}": 5}
    for extra in languages[1:]:
        if index % 2 == 0:
            skills[f"lang:{extra}"] = 3
    n = len(groups)
    for offset, level in ((0, 5), (1, 4), (2, 2)):
        if offset < n:
            skills[f"group:{groups[(index + offset) % n]}"] = level
    return skills


def port_blocks(
    reserved: tuple[int, int], *, low: int = 20000, high: int = 60000, count: int = 2
) -> list[tuple[int, int]]:
    """`count` equal blocks of UDP ports in [low, high) clear of the `reserved` range
    (Asterisk's RTP ports), so simulated callers and phones never take Asterisk's ports.

    Cut from the free space on either side of `reserved`, wherever it falls."""
    free = [(low, min(high, reserved[0])), (max(low, reserved[1] + 1), high)]
    free = [(start, end) for start, end in free if end > start]
    # With two free stretches, count + 2 shares always leave `count` whole blocks.
    size = sum(end - start for start, end in free) // (count + 2)
    blocks = []
    for start, end in free:
        while size > 0 and start + size <= end:
            blocks.append((start, start + size))
            start += size
    if len(blocks) < count:
        raise ValueError(f"no {count} port blocks free of {reserved} in {low}-{high}")
    return blocks[:count]
