"""Command line: `cityline run`, `cityline demo`, `cityline stop`, `cityline agent add ...`,
`cityline status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cityline.config import Settings
from cityline.logs import configure_logging

if TYPE_CHECKING:
    from cityline.demo import DemoOptions
    from cityline.wiring import CityLine

log = structlog.get_logger(__name__)


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "cityline.pid"


def _running_pid(settings: Settings) -> int | None:
    """The pid of a `cityline run` or `cityline demo` already running from this state dir."""
    try:
        pid = int(_pid_file(settings).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"cityline" in cmdline and pid != os.getpid() else None


async def _run(settings: Settings, demo_options: DemoOptions | None = None) -> int:
    from cityline.wiring import CityLine  # heavy imports only for the server

    service = CityLine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    pid_file = _pid_file(settings)
    pid_file.write_text(str(os.getpid()))
    banner = service.addresses()
    print("\nCityLine is running.", file=sys.stderr)
    for key, value in banner.items():
        print(f"  {key:18} {value}", file=sys.stderr)
    if demo_options is None:
        print(
            "  Agents: create one with\n"
            "    cityline agent add NAME --password ... --skills lang:pl=5,group:roads=3\n"
            "  then log in at the desk page (its browser phone rings), or register a SIP phone\n"
            "  with the returned username/password; dial 19115 from another phone.\n"
            "  Supervisors (--role supervisor) log in at the wallboard page.\n"
            "  Ctrl-C or `cityline stop` stops everything.\n",
            file=sys.stderr,
        )
    try:
        if demo_options is None:
            await stop.wait()
        else:
            await _run_demo(service, demo_options, stop)
    finally:
        await service.stop()
        pid_file.unlink(missing_ok=True)
    return 0


async def _run_demo(service: CityLine, options: DemoOptions, stop: asyncio.Event) -> None:
    """The simulated city on the running service, until Ctrl-C or the end of its minutes."""
    from cityline.demo import start_demo

    demo = await start_demo(service, options, sys.stdout)
    print(demo.banner(), flush=True)
    stopped = asyncio.create_task(stop.wait())
    finished = asyncio.create_task(demo.done.wait())
    try:
        await asyncio.wait({stopped, finished}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        finished.cancel()
        print(
            "Stopping the demo: residents' calls, simulated agents, then the service.", flush=True
        )
        await demo.stop()
        print(await demo.summary(), flush=True)


def _stop(settings: Settings) -> int:
    pid_file = _pid_file(settings)
    if not pid_file.exists():
        print("cityline is not running (no pid file)", file=sys.stderr)
        return 1
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        print("cityline was not running; removed the stale pid file", file=sys.stderr)
        return 1
    print(f"sent SIGTERM to {pid}", file=sys.stderr)
    return 0


def _api(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    token = (
        os.environ.get("CITYLINE_ADMIN_TOKEN")
        or (settings.state_dir / "admin-token").read_text().strip()
    )
    request = urllib.request.Request(
        f"http://{settings.http_host}:{settings.http_port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(
            f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
        ) from exc
    except urllib.error.URLError as exc:
        raise SystemExit(
            f"cannot reach the running service: {exc.reason} (is `cityline run` up?)"
        ) from exc


def _render_prompts(settings: Settings) -> int:
    """Render at install, so the first `run` does not spend half a minute on voices."""
    import tempfile

    from cases.catalogue import load_catalogue
    from ivr.prompts import render_prompts

    configure_logging(settings.log_level)
    with tempfile.TemporaryDirectory() as sounds:
        rendered = render_prompts(load_catalogue(), settings.cache_dir / "prompts", Path(sounds))
    print(f"prompts ready: {', '.join(f'{k} {len(v)}' for k, v in sorted(rendered.items()))}")
    return 0


def parse_skills(text: str) -> dict[str, int]:
    """'lang:pl=5,group:roads=3' -> {'lang:pl': 5, 'group:roads': 3}"""
    skills: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, level = item.partition("=")
        try:
            skills[name] = int(level or "3")
        except ValueError as exc:
            raise SystemExit(f"skill {item!r}: proficiency must be a number 1-5") from exc
    return skills


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Commands with their own parsers get their arguments untouched (including --help).
    if argv[:1] == ["models"]:
        from cityline import models

        return models.main(argv[1:])
    if argv[:1] == ["demo"]:
        from cityline.demo import demo_log_level, parse_demo_args

        options = parse_demo_args(argv[1:])
        settings = Settings()
        running = _running_pid(settings)
        if running is not None:
            raise SystemExit(
                f"CityLine is already running here (pid {running}); stop it first "
                "(`./run.sh stop`), the demo starts its own server."
            )
        configure_logging(demo_log_level())
        return asyncio.run(_run(settings, options))
    if argv[:1] == ["simulate"]:
        from acd.simulator import main as simulate_main

        return simulate_main(argv[1:])
    parser = argparse.ArgumentParser(prog="cityline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start Asterisk, PostgreSQL (if needed) and the service")
    sub.add_parser(
        "demo",
        help="the server plus simulated residents and agents, so the wallboard moves",
        add_help=False,
    )
    sub.add_parser("stop", help="stop a running `cityline run`")
    sub.add_parser("status", help="agents and their state, from the running service")
    sub.add_parser("prompts", help="render every prompt into the cache (done by the installer)")
    simulate = sub.add_parser(
        "simulate",
        help="run the ACD simulator on a scenario (e.g. city) and print the service-level figures",
        add_help=False,
    )
    simulate.add_argument("simulator_args", nargs=argparse.REMAINDER)
    models_parser = sub.add_parser(
        "models", help="list, install or download speech (Vosk) models", add_help=False
    )
    models_parser.add_argument("models_args", nargs=argparse.REMAINDER)
    agent = sub.add_parser("agent", help="manage agents").add_subparsers(
        dest="agent_command", required=True
    )
    add = agent.add_parser("add", help="create an agent (prints its SIP credentials)")
    add.add_argument("name")
    add.add_argument("--password", required=True)
    add.add_argument("--skills", default="lang:pl=3,group:other=3")
    add.add_argument("--display-name", default="")
    add.add_argument("--role", default="agent", choices=["agent", "supervisor"])
    args = parser.parse_args(argv)
    settings = Settings()

    if args.command == "run":
        configure_logging(settings.log_level)
        return asyncio.run(_run(settings))
    if args.command == "prompts":
        return _render_prompts(settings)
    if args.command == "stop":
        return _stop(settings)
    if args.command == "status":
        print(json.dumps(_api(settings, "GET", "/api/agents"), indent=2))
        return 0
    if args.command == "agent" and args.agent_command == "add":
        created = _api(
            settings,
            "POST",
            "/api/agents",
            {
                "name": args.name,
                "password": args.password,
                "display_name": args.display_name,
                "role": args.role,
                "skills": parse_skills(args.skills),
            },
        )
        print(json.dumps(created, indent=2))
        return 0
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
