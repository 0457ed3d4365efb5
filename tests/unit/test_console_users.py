"""Staff accounts: the repository and `telehealth users add|list`."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest

from telehealth import cli, users_cli
from telehealth.users import Lockout, Role, UserError, Users
from tests.unit.console_support import PASSWORD, use_cheap_hashing


@pytest.fixture(autouse=True)
def cheap(monkeypatch: Any) -> None:
    use_cheap_hashing(monkeypatch)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    users_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_users_add_reads_the_password_from_stdin(services: Any, capsys: Any) -> None:
    code = users_cli.run(
        services,
        _args(
            "add",
            "--email",
            "Ann@Clinic.example",
            "--name",
            "Ann Admin",
            "--role",
            "admin",
            "--password-stdin",
        ),
        stdin=io.StringIO(PASSWORD + "\n"),
    )
    assert code == 0
    assert "added admin" in capsys.readouterr().out
    user = Users(services.records).authenticate("ann@clinic.example", PASSWORD, services.clock())
    assert user is not None and user.role is Role.ADMIN and user.name == "Ann Admin"


def test_users_add_asks_for_the_password_twice(services: Any) -> None:
    answers = iter([PASSWORD, PASSWORD])
    code = users_cli.run(
        services,
        _args(
            "add",
            "--email",
            "cy@clinic.example",
            "--name",
            "Cy",
            "--role",
            "clinician",
            "--phone",
            "617-555-0111",
        ),
        prompt=lambda _: next(answers),
    )
    assert code == 0
    user = Users(services.records).authenticate("cy@clinic.example", PASSWORD, services.clock())
    assert user is not None and user.phone == "+16175550111" and user.role is Role.CLINICIAN


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["correct horse battery", "correct horse batterY"], "do not match"),
        (["short", "short"], "at least 12 characters"),
    ],
)
def test_users_add_refuses_a_bad_password(
    services: Any, capsys: Any, answers: list[str], message: str
) -> None:
    given = iter(answers)
    code = users_cli.run(
        services,
        _args("add", "--email", "cy@clinic.example", "--name", "Cy", "--role", "clinician"),
        prompt=lambda _: next(given),
    )
    assert code == 2 and message in capsys.readouterr().err
    assert Users(services.records).all() == []


def test_users_add_refuses_a_duplicate_email(services: Any, capsys: Any) -> None:
    for _ in range(2):
        code = users_cli.run(
            services,
            _args(
                "add",
                "--email",
                "cy@clinic.example",
                "--name",
                "Cy",
                "--role",
                "clinician",
                "--password-stdin",
            ),
            stdin=io.StringIO(PASSWORD),
        )
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_the_command_line_knows_the_users_command(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        cli.main(["users", "add", "--help"])
    out = capsys.readouterr().out
    assert "--password-stdin" in out and "--role {admin,clinician}" in out


def test_users_list(services: Any, capsys: Any) -> None:
    Users(services.records).add(
        email="a@clinic.example", name="Ann", role="admin", password=PASSWORD, now=services.clock()
    )
    users_cli.run(services, _args("list"))
    assert "Ann" in capsys.readouterr().out


def test_lockout_counts_only_consecutive_failures_and_expires(services: Any, clock: Any) -> None:
    users = Users(services.records, Lockout(failures=3, minutes=10))
    users.add(email="a@clinic.example", name="Ann", role="admin", password=PASSWORD, now=clock.now)
    for _ in range(3):
        assert users.authenticate("a@clinic.example", "nope", clock.now) is None
    assert users.authenticate("a@clinic.example", PASSWORD, clock.now) is None
    clock.advance(minutes=10, seconds=1)
    assert users.authenticate("a@clinic.example", PASSWORD, clock.now) is not None


def test_an_email_that_is_not_one_is_a_failed_sign_in_not_an_error(
    services: Any, clock: Any
) -> None:
    assert Users(services.records).authenticate("", PASSWORD, clock.now) is None
    with pytest.raises(UserError):
        Users(services.records).add(
            email="no at sign", name="X", role="admin", password=PASSWORD, now=clock.now
        )


def test_a_rotated_session_key_differs(services: Any, clock: Any) -> None:
    users = Users(services.records)
    user_id = users.add(
        email="a@clinic.example", name="Ann", role="admin", password=PASSWORD, now=clock.now
    )
    before = users.get(user_id)
    users.rotate_session_key(user_id)
    after = users.get(user_id)
    assert before and after and before.session_key != after.session_key
