"""Config rendering, path mapping and Asterisk discovery, without running Asterisk."""

from __future__ import annotations

import configparser
import dataclasses
import os
from pathlib import Path

import pytest

from pbx.ami import AmiError, AmiMessage, _raise_on_error
from pbx.asterisk import (
    DIALPLAN_DIR,
    AgentEndpoint,
    AsteriskError,
    AsteriskInstance,
    AsteriskLocation,
    AsteriskSettings,
    find_asterisk,
    render_template,
)

MOD_DIR = "/usr/lib/x86_64-linux-gnu/asterisk/modules"


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A fake sandbox root: just what render_config looks at."""
    root = tmp_path / "asterisk-sid"
    (root / MOD_DIR.lstrip("/")).mkdir(parents=True)
    (root / "usr/share/asterisk/moh").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/asterisk").write_text("")
    (root / "etc/asterisk").mkdir(parents=True)
    (root / "etc/asterisk/asterisk.conf").write_text(
        f"[directories](!)\nastmoddir => {MOD_DIR}\nastdatadir => /usr/share/asterisk\n"
    )
    return root


@pytest.fixture
def instance(sandbox: Path) -> AsteriskInstance:
    settings = AsteriskSettings.for_location(
        AsteriskLocation(Path("/usr/sbin/asterisk"), sandbox),
        "unit",
        sip_port=15060,
        ami_port=15038,
        agi_port=14573,
        http_port=18088,
        rtp_start=30000,
        rtp_end=30100,
    )
    return AsteriskInstance(settings)


def read_conf(path: Path) -> configparser.ConfigParser:
    """Asterisk's format is close enough to INI for the keys we check (=> becomes a key)."""
    parser = configparser.ConfigParser(
        strict=False,
        delimiters=("=>", "="),
        comment_prefixes=(";",),
        inline_comment_prefixes=(";",),
        interpolation=None,
    )
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.startswith("#include")
    )
    parser.read_string(text.replace("[directories](!)", "[directories]"))
    return parser


def test_render_template_refuses_missing_values() -> None:
    assert render_template("port = ${p}", {"p": 5}) == "port = 5"
    with pytest.raises(KeyError):
        render_template("port = ${p}", {})


def test_run_dir_sits_inside_the_sandbox(instance: AsteriskInstance, sandbox: Path) -> None:
    assert instance.run_dir == (sandbox / "var/lib/cityline/unit").resolve()
    assert instance.spool_dir == "/var/lib/cityline/unit/spool/monitor"
    assert instance.asterisk_sounds_dir == "/var/lib/cityline/unit/sounds"
    assert instance.host_path(instance.spool_dir) == instance.run_dir / "spool/monitor"
    assert instance.asterisk_path(instance.host_path("/var/lib/cityline/unit/x.wav")) == (
        "/var/lib/cityline/unit/x.wav"
    )


def test_run_dir_outside_the_sandbox_is_refused(sandbox: Path, tmp_path: Path) -> None:
    settings = AsteriskSettings(run_dir=tmp_path / "elsewhere", sandbox_root=sandbox)
    with pytest.raises(AsteriskError, match="inside the sandbox"):
        AsteriskInstance(settings)


def test_secret_is_generated_per_instance_and_kept_out_of_repr(tmp_path: Path) -> None:
    a, b = AsteriskSettings(run_dir=tmp_path / "a"), AsteriskSettings(run_dir=tmp_path / "b")
    assert a.ami_secret != b.ami_secret and len(a.ami_secret) >= 24
    assert a.ami_secret not in repr(a)


def test_render_config(instance: AsteriskInstance) -> None:
    instance.render_config()
    etc = instance.etc_dir
    dirs = read_conf(etc / "asterisk.conf")["directories"]
    assert dirs["astetcdir"] == "/var/lib/cityline/unit/etc"
    assert dirs["astspooldir"] == "/var/lib/cityline/unit/spool"
    assert dirs["astrundir"] == "/var/lib/cityline/unit/run"
    assert dirs["astmoddir"] == MOD_DIR
    assert dirs["astdatadir"] == "/usr/share/asterisk"

    manager = read_conf(etc / "manager.conf")
    assert manager["general"]["bindaddr"] == "127.0.0.1"
    assert manager["general"]["port"] == "15038"
    assert manager["cityline"]["secret"] == instance.settings.ami_secret
    assert (etc / "manager.conf").stat().st_mode & 0o777 == 0o600

    pjsip = (etc / "pjsip.conf").read_text()
    assert "bind = 127.0.0.1:15060" in pjsip
    assert "#include pjsip_agents.conf" in pjsip
    assert read_conf(etc / "rtp.conf")["general"]["rtpstart"] == "30000"
    assert read_conf(etc / "http.conf")["general"]["bindport"] == "18088"
    assert (
        "CITYLINE_AGI_URL = agi://127.0.0.1:14573/city"
        in (etc / "cityline-globals.conf").read_text()
    )
    # copied verbatim: the dial plan's ${...} channel variables must survive
    assert (etc / "extensions.conf").read_text() == (DIALPLAN_DIR / "extensions.conf").read_text()
    assert (etc / "pjsip_agents.conf").read_text() == ""
    for sub in ("spool/monitor", "log", "run", "sounds"):
        assert (instance.run_dir / sub).is_dir()


def test_write_agents_survives_a_rerender(instance: AsteriskInstance) -> None:
    instance.render_config()
    instance.write_agents([AgentEndpoint("agent-1", "pw-1"), AgentEndpoint("agent-2", "pw-2")])
    instance.render_config()  # a restart must not forget the agents
    pjsip = (instance.etc_dir / "pjsip_agents.conf").read_text()
    assert "[agent-1]\ntype = endpoint" in pjsip and "[agent-1]\ntype = aor" in pjsip
    assert "password = pw-2" in pjsip
    assert "context = city-agents" in pjsip and "qualify_frequency = 0" in pjsip
    assert "max_contacts = 1" in pjsip and "remove_existing = yes" in pjsip
    members = (instance.etc_dir / "queues_members.conf").read_text().splitlines()
    # each agent's SIP phone and browser softphone
    assert members == [
        "member => PJSIP/agent-1",
        "member => PJSIP/agent-1-web",
        "member => PJSIP/agent-2",
        "member => PJSIP/agent-2-web",
    ]
    assert "[agent-1-web]\ntype = endpoint" in pjsip and "webrtc = yes" in pjsip


@pytest.mark.parametrize("names", [["agent 1"], ["a]b"], ["x", "x"], ["1abc"], [""]])
def test_write_agents_rejects_bad_names(instance: AsteriskInstance, names: list[str]) -> None:
    with pytest.raises(ValueError):
        instance.write_agents([AgentEndpoint(n, "pw") for n in names])


def test_sandbox_command_line_uses_chroot(instance: AsteriskInstance, sandbox: Path) -> None:
    argv = instance.command_line()
    assert argv[1:] == [
        str(sandbox),
        "/usr/sbin/asterisk",
        "-f",
        "-n",
        "-C",
        "/var/lib/cityline/unit/etc/asterisk.conf",
    ]
    assert argv[0].endswith("chroot")


def test_find_asterisk_order(
    sandbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CITYLINE_ASTERISK_BIN", raising=False)
    monkeypatch.delenv("CITYLINE_ASTERISK_BINARY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    cache = sandbox.parent
    assert find_asterisk(cache) == AsteriskLocation(Path("/usr/sbin/asterisk"), sandbox)

    bindir = tmp_path / "bin"
    bindir.mkdir()
    system = bindir / "asterisk"
    system.write_text("#!/bin/sh\n")
    system.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert find_asterisk(cache) == AsteriskLocation(system, None)  # system beats sandbox

    configured = tmp_path / "custom-asterisk"
    configured.write_text("#!/bin/sh\n")
    configured.chmod(0o755)
    assert find_asterisk(cache, configured).binary == configured  # configured beats all
    with pytest.raises(AsteriskError, match="not an executable"):
        find_asterisk(cache, tmp_path / "missing")

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(AsteriskError, match=r"scripts/setup\.sh"):
        find_asterisk(tmp_path / "no-cache")


def test_ami_message_is_case_insensitive_and_flat() -> None:
    msg = AmiMessage({"Event": "Newchannel", "ChanVariable": ["A=1", "B=2"], "content": ""})
    assert msg["event"] == msg["EVENT"] == "Newchannel"
    assert msg["chanvariable"] == "A=1\nB=2"
    assert "content" not in msg
    assert list(msg) == ["Event", "ChanVariable"]


def test_error_responses_raise() -> None:
    _raise_on_error({"Action": "Ping"}, AmiMessage({"Response": "Success"}))
    with pytest.raises(AmiError, match="No such command"):
        _raise_on_error(
            {"Action": "Command"},
            AmiMessage(
                {
                    "Response": "Error",
                    "Message": "Command output follows",
                    "Output": "No such command",
                }
            ),
        )


def _same_instance(instance: AsteriskInstance, **changes: object) -> AsteriskInstance:
    """The next run's view of the same instance: a fresh AMI secret, maybe other settings."""
    settings = dataclasses.replace(instance.settings, ami_secret="fresh-secret", **changes)  # type: ignore[arg-type]
    return AsteriskInstance(settings)


def test_a_survivor_running_this_configuration_is_adopted_with_its_own_secret(
    instance: AsteriskInstance,
) -> None:
    instance.render_config()
    started_with = instance.settings.ami_secret
    next_run = _same_instance(instance)
    assert next_run.adopt(os.getpid()) is True
    assert next_run.settings.ami_secret == started_with  # AMI reaches it as before
    assert next_run.pid == os.getpid() and next_run.running


def test_a_survivor_with_other_ports_or_dial_plan_is_not_adopted(
    instance: AsteriskInstance,
) -> None:
    instance.render_config()
    moved = _same_instance(instance, agi_port=24573)
    assert moved.adopt(os.getpid()) is False
    assert moved.settings.ami_secret == "fresh-secret" and moved.pid is None
    (instance.etc_dir / "extensions.conf").write_text("; an older dial plan\n")
    assert _same_instance(instance).adopt(os.getpid()) is False


def test_no_pid_file_or_someone_elses_process_is_no_survivor(instance: AsteriskInstance) -> None:
    instance.render_config()
    assert instance.survivor() is None
    (instance.run_dir / "cityline-asterisk.pid").write_text(str(os.getpid()))
    assert instance.survivor() is None  # this process is not that Asterisk
