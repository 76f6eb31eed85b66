"""The demo's pure parts: arrivals, the call mix, agents' habits, ports, and its options."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from cityline.cli import main as cli_main
from cityline.demo import DemoOptions, parse_demo_args
from cityline.simulated.sipp import TEMPLATE
from cityline.simulated.traffic import (
    CASE_NOTES,
    AgentHabits,
    CallMix,
    arrival_times,
    case_note,
    port_blocks,
    resident_calls,
    simulated_agent_skills,
)

LANGUAGE_KEYS = {"pl": "1", "en": "2"}
GROUP_KEYS = {"roads": "1", "waste": "2", "noise": "3", "other": "4"}


def calls(seed: int, *, rate: float = 120.0, seconds: float = 3600.0, **kw: object) -> list:
    return list(
        resident_calls(
            random.Random(seed),
            rate_per_hour=rate,
            seconds=seconds,
            language_keys=LANGUAGE_KEYS,
            group_keys=GROUP_KEYS,
            **kw,  # type: ignore[arg-type]
        )
    )


def test_arrivals_are_a_poisson_process_at_the_asked_rate() -> None:
    times = list(arrival_times(3600.0, 10 * 3600.0, random.Random(1)))
    assert times == sorted(times) and 0 < times[0] and times[-1] < 10 * 3600.0
    assert len(times) == pytest.approx(36000, rel=0.03)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(1.0, rel=0.03)
    # Exponential gaps: the standard deviation equals the mean.
    sd = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert sd == pytest.approx(mean, rel=0.05)


def test_the_first_arrival_can_be_pinned_and_the_rest_stay_poisson() -> None:
    times = list(arrival_times(3600.0, 10 * 3600.0, random.Random(2), first_at=3.0))
    assert times[0] == 3.0 and times[1] > 3.0
    assert len(times) == pytest.approx(36000, rel=0.03)
    assert list(arrival_times(60.0, 2.0, random.Random(2), first_at=3.0)) == []


def test_arrivals_need_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="above 0"):
        next(arrival_times(0, 60, random.Random(1)))


def test_a_seed_repeats_the_same_run_and_another_seed_does_not() -> None:
    assert calls(5) == calls(5)
    assert calls(5) != calls(6)


def test_residents_press_their_language_then_their_group() -> None:
    for call in calls(2):
        (first_delay, language_key), (second_delay, group_key) = call.keys
        assert language_key == LANGUAGE_KEYS[call.language]
        assert group_key == GROUP_KEYS[call.group]
        assert 1.0 <= first_delay <= 3.0 and 1.5 <= second_delay <= 4.0
        assert call.ivr_seconds == pytest.approx(first_delay + second_delay)


def test_the_mix_is_mostly_polish_and_mostly_roads_and_waste() -> None:
    run = calls(3, rate=3600.0, seconds=6 * 3600.0)
    groups = Counter(c.group for c in run)
    languages = Counter(c.language for c in run)
    n = len(run)
    assert (groups["roads"] + groups["waste"]) / n == pytest.approx(0.72, abs=0.02)
    assert groups["roads"] > groups["waste"] > groups["noise"] > groups["other"]
    assert languages["pl"] / n == pytest.approx(0.88, abs=0.02)


def test_some_residents_give_up_after_their_patience() -> None:
    run = calls(4, rate=3600.0, seconds=4 * 3600.0)
    impatient = [c for c in run if c.patience is not None]
    assert len(impatient) / len(run) == pytest.approx(0.15, abs=0.02)
    for call in impatient:
        assert 10.0 <= call.patience <= 60.0  # type: ignore[operator]
        assert call.hang_up_after == pytest.approx(call.ivr_seconds + call.patience)
    patient = next(c for c in run if c.patience is None)
    assert patient.hang_up_after is None


def test_some_residents_call_again_from_the_same_number() -> None:
    run = calls(8, rate=600.0)
    numbers = Counter(c.caller for c in run)
    assert all(n.startswith("4860") and len(n) == 11 for n in numbers)
    assert 0 < sum(1 for count in numbers.values() if count > 1) < len(run) / 5


def test_a_mix_with_a_group_the_ivr_cannot_key_is_refused() -> None:
    with pytest.raises(ValueError, match="parking"):
        calls(1, mix=CallMix(groups={"parking": 1.0}))


def test_agents_answer_talk_and_pause_within_their_habits() -> None:
    habits, rng = AgentHabits(), random.Random(9)
    delays = [habits.draw_answer_delay(rng) for _ in range(2000)]
    talks = [habits.draw_talk_seconds(rng) for _ in range(2000)]
    pauses = [habits.draw_pause(rng) for _ in range(4000)]
    assert all(1.0 <= d <= 4.0 for d in delays)
    assert all(15.0 <= t <= 180.0 for t in talks)
    assert sum(talks) / len(talks) == pytest.approx(60.0, rel=0.1)
    taken = [p for p in pauses if p is not None]
    assert len(taken) / len(pauses) == pytest.approx(0.15, abs=0.02)
    assert {reason for reason, _ in taken} == set(habits.pause_reasons)
    assert all(20.0 <= seconds <= 60.0 for _, seconds in taken)


def test_a_few_simulated_agents_cover_every_language_and_group() -> None:
    languages, groups = list(LANGUAGE_KEYS), list(GROUP_KEYS)
    teams = [simulated_agent_skills(i, languages, groups) for i in range(3)]
    covered = set().union(*teams)
    assert covered == {f"lang:{c}" for c in languages} | {f"group:{c}" for c in groups}
    assert all(1 <= level <= 5 for team in teams for level in team.values())
    assert all(team["lang:pl"] == 5 for team in teams)
    assert teams[0] != teams[1]


def test_case_notes_fit_the_group() -> None:
    rng = random.Random(1)
    for group, notes in CASE_NOTES.items():
        description, address = case_note(rng, group)
        assert description in notes and address
    assert case_note(rng, "unknown")[0] in CASE_NOTES["other"]


def test_simulated_ports_keep_clear_of_asterisk_rtp() -> None:
    for reserved in [(10000, 10999), (30000, 30400), (45000, 45400), (33306, 33706)]:
        blocks = port_blocks(reserved)
        assert len(blocks) == 2
        for low, high in blocks:
            assert high <= reserved[0] or low > reserved[1]
            assert 20000 <= low < high <= 60000
        assert blocks[0][1] <= blocks[1][0]
    with pytest.raises(ValueError):
        port_blocks((20000, 60000))


def test_the_sipp_scenario_ships_with_the_package() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert "@@KEYS@@" in text and "@@CALLER@@" in text


def test_demo_options_default_to_a_calm_hour() -> None:
    options = parse_demo_args([])
    assert (options.rate_per_hour, options.agents, options.minutes) == (120.0, 4, 60.0)
    assert options.max_concurrent_calls == 20
    options = parse_demo_args(["--rate", "600", "--agents", "2", "--minutes", "0.5", "--seed", "3"])
    assert (options.rate_per_hour, options.agents, options.minutes, options.seed) == (
        600.0,
        2,
        0.5,
        3,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate must be above 0"),
        (["--rate", "100000"], "--rate must be above 0"),
        (["--agents", "-1"], "--agents must be from 0"),
        (["--agents", "500"], "--agents must be from 0"),
        (["--minutes", "0"], "--minutes must be above 0"),
        (["--minutes", "100000"], "--minutes must be above 0"),
        (["--max-calls", "0"], "--max-calls must be from 1"),
        (["--rate", "lots"], "invalid float value"),
    ],
)
def test_demo_options_out_of_bounds_are_refused(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_demo_args(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bounds_hold_for_options_made_in_code_too() -> None:
    with pytest.raises(ValueError, match="--max-calls"):
        DemoOptions(max_concurrent_calls=1000)


def test_the_cli_refuses_bad_demo_options_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["demo", "--agents", "99"])
    assert exc.value.code == 2
    assert "--agents must be from 0 to 20" in capsys.readouterr().err
