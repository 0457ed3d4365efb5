"""The `telehealth` command: serve, check-flows, db upgrade, sweep, roster, users, simulate."""
from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from telehealth import settings as settings_module


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telehealth", description="Back-pain triage line")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", aliases=["demo"], help="run web, jobs and sweeps in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None)

    check = commands.add_parser("check-flows", help="prove the protocol's safety properties")
    check.add_argument("--flows", type=Path, default=None, help="protocol folder (default: flows/)")

    db = commands.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])

    sweep = commands.add_parser("sweep", help="close and escalate conversations nobody finished")
    sweep.add_argument("--every", type=float, default=0, help="repeat every N seconds")

    roster = commands.add_parser("roster", help="the on-call roster: clinicians and shifts")
    roster_commands = roster.add_subparsers(dest="roster_command", required=True)
    add = roster_commands.add_parser("add", help="add a clinician, with shifts")
    add.add_argument("--name", required=True)
    add.add_argument("--role", default="clinician")
    add.add_argument("--phone", required=True, help="mobile number, E.164 (+16175550123)")
    add.add_argument("--shift", action="append", default=[], metavar="START,END,TIER",
                     help="UTC ISO times and primary|backup, e.g. 2026-11-27T08:00Z,2026-11-27T20:00Z,primary")
    roster_commands.add_parser("list", help="clinicians, who is on call now and the shifts ahead")
    remove = roster_commands.add_parser("remove", help="remove a clinician and their shifts")
    remove.add_argument("clinician_id", type=int)
    load = roster_commands.add_parser("import", help="add clinicians and shifts from a YAML file")
    load.add_argument("file", type=Path)

    from telehealth import users_cli

    users_cli.add_arguments(commands.add_parser("users", help="staff accounts for the console"))

    simulate = commands.add_parser("simulate", help="play the patient in a terminal, over HTTP")
    simulate.add_argument("--base-url", default="http://127.0.0.1:5000")
    simulate.add_argument("--auth-token", default=None, help="TWILIO_AUTH_TOKEN of the server")
    simulate.add_argument("--channel", choices=["sms", "voice"], default="sms")
    simulate.add_argument("--phone", default="+16175550100")

    args = parser.parse_args(argv)
    handler = {"serve": _serve, "demo": _serve, "check-flows": _check_flows, "db": _db,
               "sweep": _sweep, "simulate": _simulate, "roster": _roster, "users": _users}[args.command]
    return handler(args)


def _check_flows(args: argparse.Namespace) -> int:
    from telehealth import chain
    from telehealth.triage import checker, protocol

    flows = args.flows or settings_module.from_env().flows_dir
    try:
        loaded = protocol.load(flows)
    except protocol.ProtocolError as exc:
        print(f"protocol error: {exc}", file=sys.stderr)
        return 2
    try:
        chain.load(flows)
    except protocol.ProtocolError as exc:
        print(f"escalation chain error: {exc}", file=sys.stderr)
        return 2
    report = checker.check(loaded)
    print(f"protocol {loaded.id} {loaded.version}: {len(loaded.questions)} questions, "
          f"{len(loaded.rules)} rules; walked {report.paths} paths through {report.states} states")
    for problem in report.problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print("all safety properties hold" if report.ok else f"{len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def _db(args: argparse.Namespace) -> int:
    from telehealth.records import migrate

    settings = settings_module.from_env()
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    print("database is up to date")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from telehealth import services
    from telehealth.worker import sweep_once

    built = services.build(settings_module.from_env())
    while True:
        sweep_once(built)
        if not args.every:
            return 0
        time.sleep(args.every)


def _roster(args: argparse.Namespace) -> int:
    from telehealth import roster_cli, services

    return roster_cli.run(services.build(settings_module.from_env()), args)


def _users(args: argparse.Namespace) -> int:
    from telehealth import services, users_cli

    return users_cli.run(services.build(settings_module.from_env()), args)


def _serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from telehealth import services
    from telehealth.app import create_app
    from telehealth.records import migrate

    settings = settings_module.from_env()
    generated = {
        "twilio_auth_token": settings.twilio_auth_token or secrets.token_hex(16),
        "api_token": settings.api_token or secrets.token_hex(16),
    }
    settings = replace(settings, **generated, port=args.port or settings.port)
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    built = services.build(settings)
    app = create_app(services=built)
    _start_sweeper(built)
    print(
        f"Back-pain triage line on http://{args.host}:{settings.port}\n"
        f"  redis: {'embedded (fakeredis)' if settings.is_embedded_redis else settings.redis_url}\n"
        f"  database: {settings.database_url}\n"
        f"  jobs: {'in-process' if settings.run_jobs_inline else 'rq worker'}; alerts print here\n"
        f"  TWILIO_AUTH_TOKEN={settings.twilio_auth_token}\n"
        f"  API_TOKEN={settings.api_token}\n"
        f"Try it: telehealth simulate --base-url http://{args.host}:{settings.port} "
        f"--auth-token {settings.twilio_auth_token}\n"
        f"Staff console: http://{args.host}:{settings.port}/console/ "
        f"(add an account first: telehealth users add --email ... --name ... --role admin)",
        flush=True,
    )
    run_simple(args.host, settings.port, app, threaded=True, use_reloader=False)
    return 0


def _start_sweeper(built: "object") -> None:
    """Embedded mode has no worker process: sweep escalations and abandoned chats from a thread."""
    from telehealth.worker import run_sweeps

    stop = threading.Event()
    every = min(5.0, built.settings.sweep_seconds)  # type: ignore[attr-defined]
    threading.Thread(target=run_sweeps, args=(every, stop, built), name="sweeper", daemon=True).start()


def _simulate(args: argparse.Namespace) -> int:
    from telehealth.simulate import run

    token = args.auth_token or settings_module.from_env().twilio_auth_token
    return run(base_url=args.base_url, auth_token=token, channel=args.channel, phone=args.phone)


if __name__ == "__main__":
    raise SystemExit(main())
