"""The day chart's history: one point per interval, bounded to the horizon."""

from __future__ import annotations

import pytest

from acd.board import DayHistory


def test_states_in_one_interval_make_one_point_with_the_queue_peak() -> None:
    history = DayHistory(interval=30.0, horizon=3600.0)
    history.add(1000.0, sl_15min=90.0, sl_today=95.0, waiting=3)
    history.add(1010.0, sl_15min=85.123, sl_today=94.0, waiting=1)
    point = history.add(1019.9, sl_15min=80.0, sl_today=None, waiting=2)
    assert len(history) == 1
    # the newest service level, the highest queue seen in the interval
    assert point == {"t": 990.0, "sl_15min": 80.0, "sl_today": None, "waiting": 3}
    nxt = history.add(1020.0, sl_15min=85.123, sl_today=93.0, waiting=0)
    assert nxt == {"t": 1020.0, "sl_15min": 85.1, "sl_today": 93.0, "waiting": 0}
    assert history.columns() == {
        "interval": 30.0,
        "horizon": 3600.0,
        "t": [990.0, 1020.0],
        "sl_15min": [80.0, 85.1],
        "sl_today": [None, 93.0],
        "waiting": [3, 0],
    }


def test_the_history_keeps_only_the_horizon() -> None:
    history = DayHistory(interval=60.0, horizon=600.0)
    for minute in range(30):
        history.add(minute * 60.0, sl_15min=None, sl_today=None, waiting=minute)
    columns = history.columns()
    assert len(history) == 10
    assert columns["t"][0] == 20 * 60.0 and columns["t"][-1] == 29 * 60.0
    # a gap (the service was idle) drops everything older than the horizon at once
    history.add(10_000.0, sl_15min=None, sl_today=None, waiting=0)
    assert history.columns()["t"] == [9960.0]


def test_a_day_at_one_point_per_30_seconds_is_bounded() -> None:
    history = DayHistory()
    for i in range(3 * 2880):
        history.add(i * 30.0, sl_15min=90.0, sl_today=90.0, waiting=1)
    assert len(history) == 2880


def test_a_clock_stepping_back_folds_into_the_newest_point() -> None:
    history = DayHistory(interval=30.0, horizon=3600.0)
    history.add(1000.0, sl_15min=90.0, sl_today=90.0, waiting=1)
    point = history.add(900.0, sl_15min=70.0, sl_today=80.0, waiting=4)
    assert len(history) == 1 and point["t"] == 990.0 and point["waiting"] == 4


def test_nonsense_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        DayHistory(interval=0)
    with pytest.raises(ValueError):
        DayHistory(interval=60.0, horizon=30.0)
