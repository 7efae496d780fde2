"""Console accounts, kept in the store's database: scrypt-hashed passwords and a role each.

viewer: sees passes, search, cameras and alerts; editor: also changes the alert lists."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from platestream.aggregator.stores.database import Database
from platestream.errors import PlatestreamError

ROLES = ("viewer", "editor")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL
)
"""


class AccountError(PlatestreamError):
    pass


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        found = hashlib.scrypt(password.encode(), salt=_unb64(salt), dklen=32, n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, _unb64(digest))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_DUMMY = hash_password("not a password of anyone", salt=b"\0" * 16)


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(SCHEMA)

    def add(self, username: str, password: str, role: str) -> None:
        """Create or replace an account (a new password or role for an existing name)."""
        username = username.strip()
        if not username or len(username) > 64:
            raise AccountError("a user name needs 1 to 64 characters")
        if role not in ROLES:
            raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
        with self.db.transaction():
            self.db.run("DELETE FROM console_users WHERE username = ?", (username,))
            self.db.run("INSERT INTO console_users VALUES (?, ?, ?, ?)",
                        (username, hash_password(password), role, int(time.time() * 1000)))  # fmt: skip

    def remove(self, username: str) -> bool:
        return self.db.run("DELETE FROM console_users WHERE username = ?", (username,)) > 0

    def verify(self, username: str, password: str) -> str | None:
        """The user's role when the password is right, else None (equal work either way)."""
        row = self.db.one("SELECT password_hash, role FROM console_users WHERE username = ?", (username,))
        if row is None:
            check_password(password, _DUMMY)  # as slow as a real check: no telling names apart by time
            return None
        return str(row[1]) if check_password(password, str(row[0])) else None

    def role(self, username: str) -> str | None:
        row = self.db.one("SELECT role FROM console_users WHERE username = ?", (username,))
        return str(row[0]) if row else None

    def names(self) -> list[tuple[str, str]]:
        return [(str(name), str(role)) for name, role in self.db.rows(
            "SELECT username, role FROM console_users ORDER BY username")]  # fmt: skip
