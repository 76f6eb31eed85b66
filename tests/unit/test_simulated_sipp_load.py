"""The load generator's sipp scenarios and what it reads back from sipp's logs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.bench_load import slope_per_hour
from cityline.simulated.sipp_load import (
    calls_by_number,
    error_summary,
    render_agent,
    render_register,
    render_resident,
    talk_times,
    write_injection,
)


def test_resident_scenario_presses_the_keys_and_names_each_call(tmp_path: Path) -> None:
    xml = render_resident(
        prefix="4801", keys=[(2.0, "2"), (1.5, "1")], wait_seconds=120, pcap_dir=tmp_path
    )
    root = ET.fromstring(xml.encode("iso-8859-1"))
    plays = [e.get("play_pcap_audio") for e in root.iter("exec")]
    assert plays == [str(tmp_path / "key0.pcap"), str(tmp_path / "key1.pcap")]
    assert all(Path(p).stat().st_size > 0 for p in plays if p)
    waits = [r.get("timeout") for r in root.iter("recv") if r.get("request") == "BYE"]
    assert waits == ["2000", "1500", "120000"]
    assert "From: <sip:4801[call_number]@" in xml
    assert "@@" not in xml.split("-->", 1)[1]


def test_resident_prefix_must_be_digits(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        render_resident(prefix="48;x", keys=[], wait_seconds=1, pcap_dir=tmp_path)


def test_agent_scenario_draws_one_of_the_talk_times() -> None:
    talk = talk_times(30, 60, 4)
    assert talk == [30, 40, 50, 60]
    xml = render_agent(answer_seconds=0.3, talk=talk, media=Path("/tmp/talk.ulaw"))
    root = ET.fromstring(xml.encode("iso-8859-1"))
    timeouts = sorted(
        int(r.get("timeout", "0")) for r in root.iter("recv") if r.get("request") == "BYE"
    )
    assert timeouts == [30000, 40000, 50000, 60000]
    labels = {label.get("id") for label in root.iter("label")}
    jumps = {n.get("next") for n in root.iter("nop") if n.get("test")}
    assert jumps == {"talk0", "talk1", "talk2"} and jumps <= labels
    assert '<pause milliseconds="300"/>' in xml
    assert "m=audio [rtpstream_audio_port]" in xml and 'rtp_stream="/tmp/talk.ulaw,-1,0"' in xml


def test_silent_agents_answer_on_the_shared_media_port() -> None:
    xml = render_agent(answer_seconds=0, talk=[5.0], media=None)
    assert "m=audio [media_port]" in xml and "rtp_stream" not in xml and "<sample" not in xml


def test_registration_points_the_contact_at_the_answering_process(tmp_path: Path) -> None:
    xml = render_register(agents_port=23456, expires=3600)
    assert "Contact: <sip:[field0]@[local_ip]:23456>" in xml and "Expires: 3600" in xml
    path = tmp_path / "agents.csv"
    write_injection(path, [("agent-load0001", "s3cret-x")])
    assert path.read_text().splitlines() == [
        "SEQUENTIAL",
        "agent-load0001;[authentication username=agent-load0001 password=s3cret-x]",
    ]
    with pytest.raises(ValueError):
        write_injection(path, [("agent;x", "pw")])


def test_log_lines_are_grouped_by_call_number() -> None:
    log = (
        "START 48011 2026-12-04\t17:05:50.800760\t1796403950.800760\n"
        "KEY1 48011 2026-12-04\t17:05:54.317239\t1796403954.317239\n"
        "RING 48011 2026-12-04\t17:05:54.470399\t1796403954.470399 sip:48011@\n"
        "RING 48011 2026-12-04\t17:05:58.000000\t1796403958.000000 sip:48011@\n"
        "START 48021 2026-12-04\t17:05:56.800767\t1796403956.800767\n"
    )
    calls = calls_by_number(log, prefix="4801")
    assert list(calls) == ["48011"]
    assert calls["48011"].first("KEY1") == pytest.approx(1796403954.317239)
    assert calls["48011"].count("RING") == 2 and calls["48011"].first("ANSWER") is None


def test_error_summary_leaves_out_the_scenarios_own_timeouts() -> None:
    text = (
        "The following events occurred:\n"
        "2026-12-04\t17:01:54.927539\t1796403714.927539: Call-Id: 1a6e, receive timeout on"
        " message agent:5, jumping to label 6"
        "2026-12-04\t17:02:11.567707\t1796403731.567707: Aborting call on an unexpected BYE"
        " for call: 1a6ea0c1-ef4f\n"
        "2026-12-04\t17:02:12.567707\t1796403732.567707: Aborting call on an unexpected BYE"
        " for call: 99\n"
    )
    assert error_summary(text) == {"Aborting call on an unexpected BYE for call: *": 2}


def test_memory_slope_is_per_hour() -> None:
    samples = [(t, 100 + t / 60) for t in range(0, 600, 5)]  # 1 MiB a minute
    assert slope_per_hour(samples) == pytest.approx(60.0)
    assert slope_per_hour([(0, 1), (5, 1)]) is None
