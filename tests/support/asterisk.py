"""Start a real Asterisk (system or sandbox) for a test, on free loopback ports."""

from __future__ import annotations

import random
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pbx.ami import AmiLink
from pbx.asterisk import (
    AsteriskError,
    AsteriskInstance,
    AsteriskLocation,
    AsteriskSettings,
    find_asterisk,
)
from tests.support.requirements import require

__all__ = ["ami_link", "asterisk_location", "find_asterisk", "free_port", "running_asterisk"]


def free_port(*, udp_too: bool = False) -> int:
    """A loopback TCP port nobody listens on now (and free for UDP too if asked)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not udp_too:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port


def asterisk_location() -> AsteriskLocation:
    """The Asterisk to test against: the system's, else the sandbox scripts/setup.sh builds."""
    try:
        return find_asterisk()
    except AsteriskError as exc:
        require(False, f"Asterisk ({exc})")
        raise


@asynccontextmanager
async def running_asterisk(
    tmp_name: str, agi_port: int | None = None, **overrides: Any
) -> AsyncIterator[AsteriskInstance]:
    """A started Asterisk in its own instance directory, stopped and removed afterwards."""
    location = asterisk_location()
    rtp_start = random.randrange(40000, 59000, 2)
    values: dict[str, Any] = {
        "sip_port": free_port(udp_too=True),
        "ami_port": free_port(),
        "agi_port": agi_port if agi_port is not None else free_port(),
        "http_port": free_port(),
        "rtp_start": rtp_start,
        "rtp_end": rtp_start + 200,
    }
    values.update(overrides)
    name = f"test-{tmp_name}-{uuid.uuid4().hex[:8]}"
    settings = AsteriskSettings.for_location(location, name, **values)
    instance = AsteriskInstance(settings)
    try:
        await instance.start()
        yield instance
    finally:
        await instance.stop()
        shutil.rmtree(instance.run_dir, ignore_errors=True)


def ami_link(instance: AsteriskInstance, **options: Any) -> AmiLink:
    """An AmiLink (not started) to the instance's AMI."""
    s = instance.settings
    return AmiLink("127.0.0.1", s.ami_port, s.ami_username, s.ami_secret, **options)
