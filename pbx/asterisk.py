"""Run and configure our own Asterisk: a system Asterisk or the chrooted Debian sid sandbox.

Every instance lives in one directory (configuration, spool, logs, control socket, sounds), so
several can run side by side on different loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import string
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import structlog

log = structlog.get_logger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent
CONF_TEMPLATE_DIR = REPO_DIR / "asterisk-conf"
DIALPLAN_DIR = REPO_DIR / "dialplans"
DEFAULT_CACHE_DIR = Path("/var/cache/cityline")
SANDBOX_NAME = "asterisk-sid"
SANDBOX_BINARY = "/usr/sbin/asterisk"
FALLBACK_QUEUE = "cityline-fallback"

# Where packaged builds keep modules and data when the system asterisk.conf cannot be read.
_MOD_DIR_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/asterisk/modules",
    "/usr/lib/aarch64-linux-gnu/asterisk/modules",
    "/usr/lib/asterisk/modules",
    "/usr/lib64/asterisk/modules",
)
_DATA_DIR_CANDIDATES = ("/usr/share/asterisk", "/var/lib/asterisk")
# Generated files that render_config() must not overwrite once they exist.
_AGENT_FILES = ("pjsip_agents.conf", "queues_members.conf")
_PART_SUFFIX = ".part"


class AsteriskError(RuntimeError):
    """Asterisk is missing, failed to start, or died."""


class _Actions(Protocol):
    """What reload_agents() needs from an AMI link (pbx.ami.AmiLink provides it)."""

    async def action(
        self,
        action: Mapping[str, str],
        *,
        timeout: float | None = None,
    ) -> Mapping[str, str]: ...


def interface_ipv4_addresses() -> list[str]:
    """This machine's IPv4 interface addresses, loopback excluded (as pjproject lists them)."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                request = struct.pack("256s", name[:15].encode())
                reply = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:  # an interface without an IPv4 address
                continue
            address = socket.inet_ntoa(reply[20:24])
            if not address.startswith("127.") and address not in found:
                found.append(address)
    return found


def ice_loopback_mapping(addresses: Sequence[str]) -> str:
    """rtp.conf lines that advertise 127.0.0.1 for every interface address.

    Asterisk offers ICE host candidates from the interface list, which leaves loopback out;
    browsers on this machine are then asked to send media to a network address. Mapping
    each to 127.0.0.1 keeps a browser softphone's media on loopback like every other call.
    """
    if not addresses:
        return ""
    return "[ice_host_candidates]\n" + "".join(f"{a} => 127.0.0.1\n" for a in addresses)


# The number residents dial (dialplans/extensions.conf routes it to the IVR).
CITY_NUMBER = "19115"


@dataclass(frozen=True)
class AsteriskLocation:
    """Which Asterisk to run: a binary, and the chroot it lives in (None = the host's)."""

    binary: Path
    sandbox_root: Path | None


@dataclass(frozen=True)
class AgentEndpoint:
    """One agent's SIP identity: endpoint name (also the SIP user) and its password."""

    endpoint: str
    secret: str


@dataclass
class AsteriskSettings:
    """One instance: where it lives and which loopback ports it uses."""

    run_dir: Path  # host path; inside sandbox_root for the sandbox so Asterisk can see it
    binary: Path = Path(SANDBOX_BINARY)  # as seen inside sandbox_root when there is one
    sandbox_root: Path | None = None  # None = system Asterisk, file system root is "/"
    sip_port: int = 5060
    ami_port: int = 5038
    agi_port: int = 4573  # where our FastAGI server listens; the dial plan calls it
    http_port: int = 8088
    rtp_start: int = 10000
    rtp_end: int = 20000
    ami_username: str = "cityline"
    # Generated per instance: there is never a default AMI password.
    ami_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    # The user Asterisk drops to after start (it needs no root: every port is above 1024).
    # Empty, or a user the root file system does not have: it runs as whoever starts it.
    run_as: str = "asterisk"
    # Sent with every FastAGI call (the dial plan's AGI URL): only this Asterisk knows it.
    agi_key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    moh_class: str = "default"
    # How long a resident may wait in the fallback queue before the honest closing message.
    fallback_wait_seconds: int = 600
    # host:port where calls to residents go (a SIP trunk or gateway); empty: no callbacks.
    callback_trunk: str = ""
    system_name: str = "cityline"
    conf_template_dir: Path = CONF_TEMPLATE_DIR
    dialplan_dir: Path = DIALPLAN_DIR

    @classmethod
    def for_location(
        cls, location: AsteriskLocation, name: str, **overrides: object
    ) -> AsteriskSettings:
        """Settings for an instance called `name`, with run_dir placed where Asterisk can see it."""
        if "run_dir" not in overrides:
            root = location.sandbox_root
            base = (
                root / "var/lib/cityline" if root is not None else DEFAULT_CACHE_DIR / "instances"
            )
            overrides["run_dir"] = base / name
        return cls(binary=location.binary, sandbox_root=location.sandbox_root, **overrides)  # type: ignore[arg-type]


def find_asterisk(
    cache_dir: Path | None = None, configured_binary: Path | str | None = None
) -> AsteriskLocation:
    """The Asterisk to use: the configured binary, else `asterisk` on PATH, else the sandbox."""
    configured = (
        configured_binary
        or os.environ.get("CITYLINE_ASTERISK_BIN")  # the name scripts/setup.sh checks
    )
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise AsteriskError(f"configured Asterisk binary {path} is not an executable file")
        return AsteriskLocation(binary=path, sandbox_root=None)
    on_path = shutil.which("asterisk")
    if on_path:
        return AsteriskLocation(binary=Path(on_path), sandbox_root=None)
    cache = cache_dir or Path(os.environ.get("CITYLINE_CACHE", DEFAULT_CACHE_DIR))
    root = cache / SANDBOX_NAME
    if (root / SANDBOX_BINARY.lstrip("/")).is_file():
        return AsteriskLocation(binary=Path(SANDBOX_BINARY), sandbox_root=root)
    raise AsteriskError(
        f"no Asterisk found: none configured, none on PATH and no sandbox in {root}; "
        "run scripts/setup.sh (as root) to build the sandbox"
    )


def _read_system_dirs(etc_conf: Path) -> dict[str, str]:
    """[directories] of the stock asterisk.conf: we keep the package's module and data dirs."""
    dirs: dict[str, str] = {}
    try:
        text = etc_conf.read_text(errors="replace")
    except OSError:
        return dirs
    for m in re.finditer(r"^\s*(ast\w+dir)\s*=>?\s*(\S+)", text, re.MULTILINE):
        dirs.setdefault(m.group(1), m.group(2))
    return dirs


def render_template(template: str, values: Mapping[str, object]) -> str:
    """${name} substitution; a missing value is an error, not a silently broken config."""
    return string.Template(template).substitute({k: str(v) for k, v in values.items()})


class AsteriskInstance:
    """One Asterisk process we own: its configuration, its directories and its lifetime."""

    def __init__(self, settings: AsteriskSettings) -> None:
        self.settings = settings
        self.root = settings.sandbox_root or Path("/")
        self.run_dir = settings.run_dir.resolve()
        if settings.sandbox_root is not None and not self.run_dir.is_relative_to(
            self.root.resolve()
        ):
            raise AsteriskError(f"run_dir {self.run_dir} must be inside the sandbox {self.root}")
        self.etc_dir = self.run_dir / "etc"
        self.log_path = self.run_dir / "asterisk.log"
        # app_queue's own log (logger.conf's default queue_log), kept across restarts
        self.queue_log_path = self.run_dir / "log" / "queue_log"
        self.sounds_dir = self.run_dir / "sounds"  # host path; the service copies its prompts here
        self._proc: asyncio.subprocess.Process | None = None
        # (uid, gid) Asterisk runs as, when we are root and its root has that user.
        self._owner = _user_ids(self.root / "etc" / "passwd", settings.run_as)
        self._adopted: int | None = None  # an Asterisk a previous run of ours left running
        self._log = log.bind(instance=self.run_dir.name)

    # -- paths ------------------------------------------------------------------------------

    def asterisk_path(self, host_path: Path) -> str:
        """A host path as Asterisk sees it (relative to the sandbox root)."""
        rel = Path(host_path).resolve().relative_to(self.root.resolve())
        return "/" + rel.as_posix() if rel.parts else "/"

    def host_path(self, asterisk_path: str) -> Path:
        """A path as Asterisk sees it, on the host."""
        return self.root / asterisk_path.lstrip("/")

    @property
    def spool_dir(self) -> str:
        """Where MixMonitor recordings go, as Asterisk sees it."""
        return self.asterisk_path(self.run_dir / "spool" / "monitor")

    @property
    def asterisk_sounds_dir(self) -> str:
        """sounds_dir as Asterisk sees it: Playback(<this>/<name>) reaches our prompts."""
        return self.asterisk_path(self.sounds_dir)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else self._adopted

    @property
    def running(self) -> bool:
        if self._adopted is not None:
            return process_alive(self._adopted)
        return self._proc is not None and self._proc.returncode is None

    # -- a survivor of a run that died --------------------------------------------------------

    @property
    def _pid_file(self) -> Path:
        return self.run_dir / "cityline-asterisk.pid"

    def survivor(self) -> int | None:
        """The Asterisk of this instance that a run of ours which died left running, if any.

        It goes on serving residents through the dial plan's fallback queue meanwhile.
        """
        try:
            pid = int(self._pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        return pid if self.asterisk_path(self.etc_dir / "asterisk.conf") in cmdline else None

    def adopt(self, pid: int) -> bool:
        """Take over a survivor running exactly the configuration we would give it (same ports,
        dial plan, everything but the agents): its calls go on, and we reach it with the AMI
        secret it was started with. Anything else is for a fresh start."""
        secret = _manager_secret(self.etc_dir / "manager.conf", self.settings.ami_username)
        if not secret:
            return False
        agi_key = _agi_key(self.etc_dir / "cityline-globals.conf")
        if not agi_key:
            return False
        fresh = (self.settings.ami_secret, self.settings.agi_key)
        self.settings.ami_secret, self.settings.agi_key = secret, agi_key
        if not self._config_on_disk_matches():
            self.settings.ami_secret, self.settings.agi_key = fresh
            return False
        self._adopted = pid
        self._log.warning("asterisk_adopted", pid=pid, reason="left running by a run that died")
        return True

    def _config_on_disk_matches(self) -> bool:
        values = self.template_values()
        try:
            for template in self.settings.conf_template_dir.glob("*.conf"):
                on_disk = (self.etc_dir / template.name).read_text()
                if on_disk != render_template(template.read_text(), values):
                    return False
            dialplan = (self.settings.dialplan_dir / "extensions.conf").read_text()
            return (self.etc_dir / "extensions.conf").read_text() == dialplan
        except OSError:
            return False

    async def stop_survivor(self, pid: int, timeout: float = 5.0) -> None:
        """A survivor we cannot adopt (its ports differ from this configuration) is stopped."""
        self._log.warning("asterisk_survivor_stopped", pid=pid)
        await _terminate(pid, timeout)
        self._pid_file.unlink(missing_ok=True)

    # -- configuration ----------------------------------------------------------------------

    def _system_dirs(self) -> tuple[str, str]:
        """(astmoddir, astdatadir) of the installed package, as Asterisk sees them."""
        found = _read_system_dirs(self.host_path("/etc/asterisk/asterisk.conf"))
        mod = found.get("astmoddir")
        if not mod or not self.host_path(mod).is_dir():
            mod = next((d for d in _MOD_DIR_CANDIDATES if self.host_path(d).is_dir()), None)
        data = found.get("astdatadir")
        if not data or not self.host_path(data).is_dir():
            data = next((d for d in _DATA_DIR_CANDIDATES if self.host_path(d).is_dir()), None)
        if mod is None or data is None:
            raise AsteriskError(
                f"cannot find Asterisk's module or data directory under {self.root}"
            )
        return mod, data

    def template_values(self) -> dict[str, object]:
        s = self.settings
        mod_dir, data_dir = self._system_dirs()
        return {
            "etc_dir": self.asterisk_path(self.etc_dir),
            "spool_dir": self.asterisk_path(self.run_dir / "spool"),
            "log_dir": self.asterisk_path(self.run_dir / "log"),
            "run_dir": self.asterisk_path(self.run_dir / "run"),
            "lib_dir": self.asterisk_path(self.run_dir / "lib"),
            "cache_dir": self.asterisk_path(self.run_dir / "cache"),
            "mod_dir": mod_dir,
            "data_dir": data_dir,
            "system_name": s.system_name,
            "sip_port": s.sip_port,
            "ami_port": s.ami_port,
            "agi_port": s.agi_port,
            "http_port": s.http_port,
            "rtp_start": s.rtp_start,
            "rtp_end": s.rtp_end,
            "ami_username": s.ami_username,
            "ami_secret": s.ami_secret,
            "agi_key": s.agi_key,
            "run_as": f"runuser = {s.run_as}\nrungroup = {s.run_as}" if self._owner else "",
            "moh_class": s.moh_class,
            "sounds_dir": self.asterisk_sounds_dir,
            "fallback_wait": s.fallback_wait_seconds,
            "monitor_dir": self.spool_dir,
            "ice_host_candidates": ice_loopback_mapping(interface_ipv4_addresses()),
        }

    def _make_dirs(self) -> None:
        for sub in ("etc", "spool/monitor", "log", "run", "lib/keys", "cache", "sounds"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)

    def _hand_over(self) -> None:
        """Asterisk's own directories and config belong to the user it runs as, no one else."""
        if self._owner is None:
            return
        uid, gid = self._owner
        for sub in ("etc", "spool", "log", "run", "lib", "cache"):
            top = self.run_dir / sub
            for path in [top, *top.rglob("*")]:
                os.chown(path, uid, gid, follow_symlinks=False)

    def render_config(self) -> None:
        """Write the full configuration into run_dir/etc (agent lists are kept if present)."""
        self._make_dirs()
        values = self.template_values()
        for template in sorted(self.settings.conf_template_dir.glob("*.conf")):
            _write_private(
                self.etc_dir / template.name, render_template(template.read_text(), values)
            )
        # The dial plan is full of ${...} channel variables: copied as is, never templated.
        shutil.copyfile(
            self.settings.dialplan_dir / "extensions.conf", self.etc_dir / "extensions.conf"
        )
        for name in _AGENT_FILES:
            if not (self.etc_dir / name).exists():
                _write_private(self.etc_dir / name, "")
        trunk = self.settings.callback_trunk
        _write_private(
            self.etc_dir / "pjsip_trunk.conf",
            render_template(
                (self.settings.conf_template_dir / "pjsip_trunk.conf.part").read_text(),
                {"contact": f"sip:{trunk}"},
            )
            if trunk
            else "",
        )
        self._hand_over()

    def write_agents(self, agents: Sequence[AgentEndpoint]) -> None:
        """Regenerate agents' SIP endpoints and fallback-queue membership; then reload_agents()."""
        names = [a.endpoint for a in agents]
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,79}", n)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"invalid or duplicate agent endpoint names: {bad or names}")
        tdir = self.settings.conf_template_dir
        endpoint_t = (tdir / f"pjsip_agent.conf{_PART_SUFFIX}").read_text()
        member_t = (tdir / f"queues_member.conf{_PART_SUFFIX}").read_text()
        endpoints = "".join(
            render_template(endpoint_t, {"endpoint": a.endpoint, "secret": a.secret})
            for a in agents
        )
        members = "".join(render_template(member_t, {"endpoint": a.endpoint}) for a in agents)
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.etc_dir / "pjsip_agents.conf", endpoints)
        _write_private(self.etc_dir / "queues_members.conf", members)
        self._hand_over()

    # -- process ----------------------------------------------------------------------------

    def command_line(self) -> list[str]:
        conf = self.asterisk_path(self.etc_dir / "asterisk.conf")
        argv = [str(self.settings.binary), "-f", "-n", "-C", conf]
        if self.settings.sandbox_root is None:
            return argv
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        return [chroot, str(self.settings.sandbox_root), *argv]

    async def start(self, timeout: float = 20.0) -> None:
        """Render the config, launch Asterisk and wait until its AMI port accepts connections."""
        if self.running:
            raise AsteriskError("this Asterisk instance is already running")
        self._adopted = None  # a survivor we took over and that has since died
        if self.settings.sandbox_root is not None and os.geteuid() != 0:
            raise AsteriskError("running the Asterisk sandbox needs root (chroot)")
        self.render_config()
        # A stale control socket from a killed run would make Asterisk refuse to start.
        (self.run_dir / "run" / "asterisk.ctl").unlink(missing_ok=True)
        argv = self.command_line()
        with _open_log(self.log_path) as out:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # own process group: a Ctrl-C to us is not sent to it
            )
        self._log.info(
            "asterisk_starting", pid=self._proc.pid, argv=argv, ami_port=self.settings.ami_port
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._proc.returncode is not None:
                code = self._proc.returncode
                self._proc = None
                raise AsteriskError(f"Asterisk exited with {code} during start:\n{self.log_tail()}")
            if await _port_open("127.0.0.1", self.settings.ami_port):
                break
            if loop.time() >= deadline:
                await self.stop()
                raise AsteriskError(
                    f"Asterisk's AMI port {self.settings.ami_port} did not open "
                    f"within {timeout}s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)
        self._pid_file.write_text(str(self._proc.pid))
        self._log.info("asterisk_started", pid=self._proc.pid)

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM our Asterisk, then SIGKILL if it has not gone after `timeout` seconds."""
        self._pid_file.unlink(missing_ok=True)
        if self._adopted is not None:
            pid, self._adopted = self._adopted, None
            await _terminate(pid, timeout)
            self._log.info("asterisk_stopped", pid=pid, adopted=True)
            return
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        # A stopped (SIGSTOP) process would never act on SIGTERM.
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            self._log.warning("asterisk_kill", pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        self._log.info("asterisk_stopped", pid=proc.pid, returncode=proc.returncode)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def reload_agents(ami: _Actions, *, timeout: float = 10.0) -> None:
    """Make Asterisk pick up write_agents(): reload PJSIP, then the queues."""
    for module in ("res_pjsip.so", "app_queue.so"):
        await ami.action({"Action": "Reload", "Module": module}, timeout=timeout)


def _open_log(path: Path) -> BinaryIO:
    """A fresh log per start, so a start failure shows only this run's output."""
    return path.open("wb")


def _write_private(path: Path, text: str) -> None:
    """Config files hold secrets: readable by the owner only, replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _user_ids(passwd: Path, user: str) -> tuple[int, int] | None:
    """(uid, gid) of `user` in that passwd file, when we are root and can hand files over."""
    if not user or os.geteuid() != 0:
        return None
    try:
        lines = passwd.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == user:
            return int(fields[2]), int(fields[3])
    return None


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM a process that is not our child, then SIGKILL if it outlives `timeout`."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    for _ in range(max(1, round(timeout / 0.05))):
        if not process_alive(pid):
            return
        await asyncio.sleep(0.05)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _manager_secret(path: Path, username: str) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    section = re.search(rf"^\[{re.escape(username)}\]\s*$(.*?)(?=^\[|\Z)", text,
                        re.MULTILINE | re.DOTALL)  # fmt: skip
    secret = re.search(r"^secret\s*=\s*(\S+)", section.group(1), re.MULTILINE) if section else None
    return secret.group(1) if secret else None


def _agi_key(path: Path) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    found = re.search(r"^CITYLINE_AGI_URL\s*=.*[?&]key=([^&\s]+)", text, re.MULTILINE)
    return found.group(1) if found else None


async def _port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
