"""What the tests need is installed by scripts/setup.sh (`./run.sh test` runs it first): a missing
piece is a broken set-up, so the tests that need it fail and say what to do, never skip."""

from __future__ import annotations

import pytest


def require(present: object, what: str) -> None:
    if not present:
        pytest.fail(f"{what} is missing: run scripts/setup.sh (./run.sh test does)", pytrace=False)
