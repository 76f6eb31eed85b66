"""Which recordings expire when: the retention rules with the clock given."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from recordings.policy import (
    Retention,
    RetentionError,
    StoredRecording,
    compression_ratio,
    content_type,
    conversion_timeout,
    day_of,
    day_past_retention,
    expired,
    expiry_of,
)

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
DEFAULTS = Retention.of({})


def rec(days_ago: float, *, case: bool = False) -> StoredRecording:
    return StoredRecording(uuid.uuid4(), NOW - timedelta(days=days_ago), case)


def test_the_defaults_keep_answered_calls_90_days_and_case_calls_a_year() -> None:
    assert DEFAULTS.days == {"answered": 90, "case": 365}
    assert DEFAULTS.cutoff("answered", NOW) == NOW - timedelta(days=90)
    assert DEFAULTS.cutoff("case", NOW) == NOW - timedelta(days=365)


def test_an_answered_call_expires_the_moment_its_period_ends() -> None:
    recording = StoredRecording(uuid.uuid4(), NOW - timedelta(days=90), False)
    expiry = expiry_of(recording, DEFAULTS, NOW)
    assert expiry is not None and expiry.kind == "answered" and expiry.retention_days == 90
    assert expiry.expired_at == NOW
    assert expiry_of(recording, DEFAULTS, NOW - timedelta(seconds=1)) is None


def test_a_call_linked_to_a_case_is_kept_for_the_case_period() -> None:
    linked = rec(200, case=True)
    assert linked.kind == "case"
    assert expiry_of(linked, DEFAULTS, NOW) is None
    later = expiry_of(linked, DEFAULTS, NOW + timedelta(days=165))
    assert later is not None and later.kind == "case" and later.retention_days == 365


def test_the_sweep_list_holds_only_what_expired_oldest_first() -> None:
    old, older, young, case_young, case_old = (
        rec(100),
        rec(400),
        rec(10),
        rec(100, case=True),
        rec(366, case=True),
    )
    found = expired([old, young, case_young, older, case_old], DEFAULTS, NOW)
    # Ordered by when each expired: 310 days ago, 10 days ago, yesterday.
    assert [e.recording for e in found] == [older, old, case_old]
    assert [e.kind for e in found] == ["answered", "answered", "case"]


def test_a_kind_set_to_never_is_never_deleted_by_the_sweep() -> None:
    keep_cases = Retention.of({"case": None})
    assert keep_cases.cutoff("case", NOW) is None
    assert expired([rec(5000, case=True), rec(91)], keep_cases, NOW)[0].kind == "answered"
    assert len(expired([rec(5000, case=True)], keep_cases, NOW)) == 0


def test_a_city_sets_its_own_periods() -> None:
    short = Retention.of({"answered": 30, "case": 180})
    assert [e.recording.kind for e in expired([rec(31), rec(179, case=True)], short, NOW)] == [
        "answered"
    ]


@pytest.mark.parametrize("bad", [{"answered": 0}, {"case": -1}, {"listen": 10}, {"answered": 1.5}])
def test_unusable_periods_are_refused(bad: dict) -> None:
    with pytest.raises(RetentionError):
        Retention.of(bad)


def test_archive_days_past_the_shortest_period() -> None:
    assert day_of("2026-03-31") == date(2026, 3, 31)
    assert day_of("2026-02-30") is None and day_of(".work") is None and day_of("x") is None
    # A day's files are all older than 90 days once 90 days have passed since its end.
    assert day_past_retention(date(2026, 3, 31), DEFAULTS, datetime(2026, 6, 30, tzinfo=UTC))
    assert not day_past_retention(date(2026, 4, 1), DEFAULTS, datetime(2026, 6, 30, tzinfo=UTC))
    assert not day_past_retention(
        date(2000, 1, 1), Retention.of({"answered": None, "case": None}), NOW
    )


def test_stored_files_are_served_as_what_they_are() -> None:
    assert content_type("/a/b/x.ogg") == "audio/ogg; codecs=opus"
    assert content_type("x.WAV") == "audio/wav"
    assert content_type("x.bin") == "application/octet-stream"


def test_conversion_gets_time_in_proportion_to_the_recording() -> None:
    assert conversion_timeout(0) == 30
    three_hours = 3 * 3600 * 16_000
    assert 30 < conversion_timeout(three_hours) < 30 + 3 * 3600 / 5
    assert compression_ratio(160_000, 20_000) == 8.0 and compression_ratio(1, 0) is None
