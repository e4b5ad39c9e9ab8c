"""Users and roles of the web app: argon2-hashed passwords (pwdlib), roles viewer, reviewer and admin."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from radar.errors import RadarError
from radar.models import User, utcnow

log = logging.getLogger(__name__)

ROLES = ("viewer", "reviewer", "admin")
DECIDING_ROLES = frozenset({"reviewer", "admin"})
MIN_PASSWORD_LENGTH = 8
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
# Argon2 parameters; empty means pwdlib's defaults (about a quarter second a hash). Tests lower them,
# as Django's test settings swap in a fast hasher; a stored hash carries its own, so verifying still works.
ARGON2_PARAMS: dict[str, int] = {}


class UserError(RadarError):
    """A user name, role or password was refused."""


@lru_cache(maxsize=1)
def _hasher():
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    return PasswordHash((Argon2Hasher(**ARGON2_PARAMS),))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("not-a-real-password-only-for-timing")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def can_decide(role: str | None) -> bool:
    """Whether a role may accept, edit or reject proposals."""
    return role in DECIDING_ROLES


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def add_user(engine: Engine, username: str, password: str, role: str = "viewer", email: str = "") -> User:
    """Create a user; the password is stored only as an argon2 hash."""
    if not _USERNAME.match(username or ""):
        raise UserError(f"user name {username!r} is not valid: use letters, digits and . _ @ - (at most 100)")
    check_role(role)
    check_password(password)
    with Session(engine, expire_on_commit=False) as session:
        user = User(username=username, email=email, password_hash=hash_password(password), role=role)
        session.add(user)
        try:
            session.commit()
        except IntegrityError:
            raise UserError(f"user {username!r} already exists; change its role on the users page or with `radar users set-role`") from None
    log.info("user %s added with role %s", username, role)
    return user


def get_user(engine: Engine, username: str) -> User | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(select(User).where(User.username == username)).first()


def get_user_by_id(engine: Engine, user_id: int) -> User | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(User, user_id)


def list_users(engine: Engine) -> list[User]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(User).order_by(User.username)))


def set_role(engine: Engine, username: str, role: str) -> User:
    """Change a user's role; the last active admin cannot stop being one, so someone can still manage users."""
    check_role(role)
    with Session(engine, expire_on_commit=False) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise UserError(f"no user {username!r}; add one with `radar users add {username} --role {role}`")
        change = update(User).where(User.id == user.id).values(role=role)
        if user.role == "admin" and role != "admin" and user.active:
            # Two admins demoting each other at once must not leave none: PostgreSQL waits here until the
            # other change is committed, and the UPDATE counts the other admins in the same statement that
            # writes (atomic under SQLite's single writer).
            session.exec(select(User.id).where(User.role == "admin").with_for_update()).all()
            others = (select(func.count()).select_from(User)
                      .where(User.role == "admin", User.active == True, User.id != user.id))  # noqa: E712 - SQL
            change = change.where(others.scalar_subquery() > 0)
        if session.exec(change).rowcount == 0:
            raise UserError(f"{username} is the last active admin: make another user an admin first "
                            f"(on the users page or with `radar users set-role NAME admin`), then change {username}'s role")
        session.commit()
    user.role = role
    log.info("user %s now has role %s", username, role)
    return user


def set_password(engine: Engine, username: str, password: str) -> None:
    check_password(password)
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise UserError(f"no user {username!r}")
        user.password_hash = hash_password(password)
        session.add(user)
        session.commit()


def record_login(engine: Engine, user: User) -> None:
    """Note that `user` logged in now (users page, `radar users list`)."""
    with Session(engine) as session:
        row = session.get(User, user.id)
        if row is not None:
            row.last_login_at = user.last_login_at = utcnow()
            session.add(row)
            session.commit()


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The active user with this name and password, or None. Takes as long for an unknown name."""
    user = get_user(engine, username or "")
    if user is None or not user.active:
        _hasher().verify(password or "", _dummy_hash())  # same cost as a real check: names cannot be probed by timing
        return None
    valid, new_hash = _hasher().verify_and_update(password or "", user.password_hash)
    if not valid:
        return None
    if new_hash:  # the hasher's parameters were raised since this hash was made
        with Session(engine) as session:
            row = session.get(User, user.id)
            row.password_hash = new_hash
            session.add(row)
            session.commit()
        user.password_hash = new_hash  # what the session started from this login is marked with
    return user
