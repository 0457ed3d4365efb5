"""Staff accounts for the console: admins and clinicians, argon2 password hashes, lockout.

A failed sign-in is counted in the database, so the lockout holds across web processes; five in a
row (configurable) lock the account for fifteen minutes. The answer to a failed sign-in never says
whether the email exists.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, CheckConstraint, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from telehealth.records import Base, Records, UTCDateTime, as_utc

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()


class Role(str, Enum):
    ADMIN = "admin"
    CLINICIAN = "clinician"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'clinician')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    # The roster number of a clinician who also takes pages: acknowledging from the console
    # then spares them the "case taken" notice, as an SMS acknowledgement does.
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Rotated at sign-out: a copied session cookie stops working everywhere.
    session_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class StaffUser:
    id: int
    email: str
    name: str
    role: Role
    phone: str | None
    active: bool
    session_key: str
    locked_until: datetime | None = None
    last_sign_in_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class UserError(ValueError):
    """An account change that cannot be made (duplicate email, short password, unknown role)."""


@dataclass(frozen=True)
class Lockout:
    failures: int = 5
    minutes: int = 15


class Users:
    def __init__(self, records: Records, lockout: Lockout | None = None) -> None:
        self.records = records
        self.lockout = lockout or Lockout()

    def add(
        self,
        *,
        email: str,
        name: str,
        role: str,
        password: str,
        now: datetime,
        phone: str | None = None,
    ) -> int:
        email, name = normalise_email(email), name.strip()
        if not name:
            raise UserError("a name is required")
        try:
            role = Role(role).value
        except ValueError as exc:
            raise UserError(f"role must be one of: {', '.join(r.value for r in Role)}") from exc
        check_password(password)
        with self.records.transaction() as session:
            if session.scalar(select(User.id).where(User.email == email)) is not None:
                raise UserError(f"an account for {email} already exists")
            user = User(
                email=email,
                name=name,
                role=role,
                password_hash=_HASHER.hash(password),
                phone=phone or None,
                active=True,
                failed_sign_ins=0,
                session_key=secrets.token_hex(16),
                created_at=as_utc(now),
            )
            session.add(user)
            session.flush()
            return user.id

    def authenticate(self, email: str, password: str, now: datetime) -> StaffUser | None:
        """The user if the password is right and the account open; otherwise count a failure."""
        now = as_utc(now)
        try:
            email = normalise_email(email)
        except UserError:
            _verify(_decoy_hash(), password)
            return None
        with self.records.transaction() as session:
            user = session.scalar(select(User).where(User.email == email))
            if user is None or not user.active or _is_locked(user, now):
                _verify(_decoy_hash(), password)
                return None
            if not _verify(user.password_hash, password):
                self._count_failure(session, user, now)
                return None
            if _HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = _HASHER.hash(password)
            user.failed_sign_ins, user.locked_until, user.last_sign_in_at = 0, None, now
            return _staff(user)

    def _count_failure(self, session: Session, user: User, now: datetime) -> None:
        # Incremented in SQL: two wrong passwords at once both count.
        session.execute(
            update(User).where(User.id == user.id).values(failed_sign_ins=User.failed_sign_ins + 1)
        )
        failures = session.scalar(select(User.failed_sign_ins).where(User.id == user.id)) or 0
        if failures >= self.lockout.failures:
            session.execute(
                update(User)
                .where(User.id == user.id)
                .values(
                    failed_sign_ins=0, locked_until=now + timedelta(minutes=self.lockout.minutes)
                )
            )

    def get(self, user_id: int) -> StaffUser | None:
        with self.records.transaction() as session:
            user = session.get(User, user_id)
            return None if user is None else _staff(user)

    def id_for_email(self, email: str) -> int | None:
        with self.records.transaction() as session:
            return session.scalar(select(User.id).where(User.email == email.strip().lower()))

    def all(self) -> list[StaffUser]:
        with self.records.transaction() as session:
            return [_staff(u) for u in session.scalars(select(User).order_by(User.name, User.id))]

    def rotate_session_key(self, user_id: int) -> None:
        with self.records.transaction() as session:
            session.execute(
                update(User).where(User.id == user_id).values(session_key=secrets.token_hex(16))
            )

    def set_active(self, user_id: int, active: bool) -> None:
        """Deactivated accounts keep their notes' authorship but cannot sign in."""
        with self.records.transaction() as session:
            user = session.get(User, user_id)
            if user is None:
                raise UserError(f"no user {user_id}")
            user.active = active
            user.session_key = secrets.token_hex(16)

    def unlock(self, user_id: int) -> None:
        with self.records.transaction() as session:
            session.execute(
                update(User).where(User.id == user_id).values(failed_sign_ins=0, locked_until=None)
            )


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise UserError("give a valid email address")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def _is_locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """Checked when the email is unknown: a wrong email costs as long as a wrong password."""
    return _HASHER.hash(secrets.token_hex(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _staff(user: User) -> StaffUser:
    return StaffUser(
        id=user.id,
        email=user.email,
        name=user.name,
        role=Role(user.role),
        phone=user.phone,
        active=user.active,
        session_key=user.session_key,
        locked_until=user.locked_until,
        last_sign_in_at=user.last_sign_in_at,
    )
