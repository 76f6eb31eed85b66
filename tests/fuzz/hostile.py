"""Shared pieces of the fuzz suites: hypothesis settings that are bounded and repeatable, and
strategies for hostile bytes (mutations of a valid stream, cut into arbitrary reads)."""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st


def fuzz_settings(max_examples: int) -> settings:
    """Same inputs on every run (derandomized, no example database), no per-example deadline:
    CI time is bounded by max_examples, and a failure found once is found again."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        # shrink a failure to a small example, but skip the slow "explain" pass after it
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )


# Bytes that make parsers stumble: line ends, NUL, invalid UTF-8, frame-type bytes, 0xff.
SPECIAL_BYTES = [b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b" ", b"-"]


@st.composite
def mutated(draw: st.DrawFn, base: bytes, max_mutations: int = 6) -> bytes:
    """`base` with a few byte flips, insertions, deletions, duplicated slices or a cut end."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, max_mutations))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=40) | st.sampled_from(SPECIAL_BYTES))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif kind == "duplicate":
            end = draw(st.integers(at, min(len(data), at + 200)))
            data[at:at] = data[at:end]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def cut(data: bytes, seed: int) -> list[bytes]:
    """`data` cut into reads at points chosen by `seed`: one read, byte by byte, or a few
    arbitrary cuts. (A seed rather than drawn cut points: cheaper for hypothesis to make.)"""
    rng = random.Random(seed)
    mode = rng.randrange(4)
    if mode == 0:
        return [data] if data else []
    if mode == 1 and len(data) < 4000:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 16)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


seeds = st.integers(0, 2**32 - 1)
