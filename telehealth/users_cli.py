"""`telehealth users add|list`: staff accounts for the console, from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, Callable, TextIO

from telehealth.phones import to_e164
from telehealth.users import Role, UserError, Users, check_password


def add_arguments(users: argparse.ArgumentParser) -> None:
    commands = users.add_subparsers(dest="users_command", required=True)
    add = commands.add_parser("add", help="add a console account (the password is asked for)")
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument(
        "--phone",
        default=None,
        help="the clinician's roster number, if they also take pages (E.164)",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    commands.add_parser("list", help="console accounts")


def run(
    services: Any,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    try:
        if args.users_command == "add":
            return _add(services, args, stdin or sys.stdin, prompt)
        return _list(services)
    except UserError as exc:
        print(f"users: {exc}", file=sys.stderr)
        return 2


def _add(
    services: Any, args: argparse.Namespace, stdin: TextIO, prompt: Callable[[str], str]
) -> int:
    phone = None
    if args.phone:
        phone = to_e164(args.phone, services.settings.default_region)
        if phone is None:
            raise UserError(f"not a phone number: {args.phone}")
    password = _password(args.password_stdin, stdin, prompt)
    user_id = Users(services.records).add(
        email=args.email,
        name=args.name,
        role=args.role,
        password=password,
        phone=phone,
        now=services.clock(),
    )
    services.records.audit(
        "user_add", actor="cli", target=f"user:{user_id}", detail={"role": args.role}
    )
    print(f"added {args.role} {user_id}: {args.name}")
    return 0


def _password(from_stdin: bool, stdin: TextIO, prompt: Callable[[str], str]) -> str:
    if from_stdin:
        password = stdin.readline().rstrip("\r\n")
        check_password(password)
        return password
    password = prompt("Password: ")
    check_password(password)
    if prompt("Password again: ") != password:
        raise UserError("the passwords do not match")
    return password


def _list(services: Any) -> int:
    for user in Users(services.records).all():
        state = "" if user.active else "  (deactivated)"
        print(f"  {user.id:>4}  {user.name:<24} {user.role.value:<10} {user.email}{state}")
    return 0
