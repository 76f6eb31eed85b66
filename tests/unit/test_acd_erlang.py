"""Erlang C against published values."""

from __future__ import annotations

import pytest

from acd.erlang import (
    agents_needed,
    average_speed_of_answer,
    erlang_b,
    erlang_c_wait_probability,
    service_level,
)


def test_textbook_m_m_2() -> None:
    # M/M/2 at 1 erlang: P(wait) = A^2 / (2 + A^2 ... ) = 1/3 exactly
    assert erlang_c_wait_probability(2, 1.0) == pytest.approx(1 / 3)


def test_erlang_b_table_value() -> None:
    # Erlang B tables: 10 erlangs on 10 lines blocks 21.46%
    assert erlang_b(10, 10.0) == pytest.approx(0.2146, abs=1e-4)


def test_call_centre_helper_worked_example() -> None:
    # 200 calls/h (100 per 30 min), AHT 180 s = 10 erlangs; published: 14 agents give
    # P(wait) 17.4%, ASA 7.8 s; 11 agents give P(wait) 68.2%.
    # SL(20 s) = 1 - 0.1741 * exp(-(14 - 10) * 20 / 180) = 0.888 by hand
    assert erlang_c_wait_probability(11, 10.0) == pytest.approx(0.6821, abs=5e-4)
    assert erlang_c_wait_probability(14, 10.0) == pytest.approx(0.1741, abs=5e-4)
    assert service_level(14, 200, 180, 20) == pytest.approx(0.888, abs=1e-3)
    assert average_speed_of_answer(14, 200, 180) == pytest.approx(7.8, abs=0.05)
    assert agents_needed(200, 180, 0.8, 20) == 14


@pytest.mark.parametrize("rate,agents", [(100, 11), (400, 34), (1600, 118)])
def test_design_staffing_figures(rate: float, agents: int) -> None:
    assert agents_needed(rate, 240) == agents
    assert service_level(agents, rate, 240) >= 0.9 > service_level(agents - 1, rate, 240)


def test_understaffed_and_edge_cases() -> None:
    assert erlang_c_wait_probability(5, 5.0) == 1.0
    assert service_level(5, 75, 240) == 0.0  # 5 erlangs on 5 agents never settles
    assert average_speed_of_answer(5, 75, 240) == float("inf")
    assert agents_needed(0, 240) == 0
    with pytest.raises(ValueError):
        agents_needed(100, 0)
    with pytest.raises(ValueError):
        agents_needed(100, 240, target_sl=1.0)
