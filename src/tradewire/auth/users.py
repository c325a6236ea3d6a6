"""Built-in users: a JSON file of argon2id password hashes, read at login time.

File shape (written by ``tradewire users add``)::

    {"users": {"alice": {"password_hash": "$argon2id$...", "level": "trader"}}}

Verification of an unknown user still runs one argon2 verification against a fixed dummy hash, so
response time does not reveal which user names exist.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tradewire.auth.permissions import Level
from tradewire.auth.tokens import MAX_USER_ID, valid_user_id
from tradewire.errors import ConfigError

MAX_USERNAME = MAX_USER_ID


@dataclass(frozen=True, slots=True)
class User:
    name: str
    level: Level


class UserStore:
    """Reads and writes the users file; safe to edit while a server runs (re-read on each login)."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = self._hasher.hash("tradewire-dummy-password")

    def add(self, name: str, password: str, level: Level) -> None:
        """Create or replace ``name`` with a fresh hash; the file is replaced atomically."""
        if not valid_user_id(name):  # it becomes a token's ``sub``: the same rule applies
            raise ConfigError(f"user name must be 1..{MAX_USERNAME} printable characters")
        if len(password) < 8:
            raise ConfigError("password must be at least 8 characters")
        data = self._load()
        data[name] = {"password_hash": self._hasher.hash(password), "level": level.value}
        self._save(data)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` matches, else None (constant work either way)."""
        entry = self._load().get(name)
        stored = entry.get("password_hash") if isinstance(entry, dict) else None
        try:
            self._hasher.verify(stored if isinstance(stored, str) else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if entry is None:
            return None
        return User(name, Level(entry.get("level", Level.BASIC.value)))

    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"users file {self.path} is unreadable") from exc
        users = raw.get("users") if isinstance(raw, dict) else None
        if not isinstance(users, dict):
            raise ConfigError(f"users file {self.path} has no 'users' object")
        return users

    def _save(self, users: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"users": users}, handle, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
