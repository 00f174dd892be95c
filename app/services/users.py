"""User accounts: creation with argon2 password hashes, and verification."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import Role
from app.core.tables import User
from app.services import audit

MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()


class UserError(ValueError):
    """A user could not be created or changed; the message says why."""


def validate_username(username: str) -> str:
    name = username.strip()
    if not name or len(name) > 64 or not all(ch.isalnum() or ch in "._-@" for ch in name):
        raise UserError("a user name is 1-64 letters, digits or . _ - @")
    return name


def create_user(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str,
    display_name: str = "",
    actor: str = audit.SYSTEM_ACTOR,
) -> User:
    name = validate_username(username)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise UserError(f"user {name!r} already exists")
    user = User(
        username=name,
        display_name=display_name or name,
        role=role,
        password_hash=_hasher.hash(password),
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.create",
        object_type="user",
        object_id=user.id,
        detail={"username": name, "role": role.value},
    )
    return user


def verify_password(user: User, password: str) -> bool:
    if not user.active or not user.password_hash:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
