"""Passwords, API tokens and web session ids: only hashes are stored. Shared
by the CLI (``user add``, ``token add|list|revoke``) and the web UI's login,
sessions and bearer tokens."""

from __future__ import annotations

import hashlib
import secrets

ROLES = ("viewer", "admin")
DEFAULT_TOKEN_DAYS = 90  # the store's default; the CLI passes Config.token_days

_dummy_hash: str | None = None


def hash_password(password: str) -> str:
    from werkzeug.security import generate_password_hash
    return generate_password_hash(password)


def check_password(stored: str, password: str) -> bool:
    from werkzeug.security import check_password_hash
    return check_password_hash(stored, password)


def check_login(stored: str | None, password: str) -> bool:
    """Check a password against a user's stored hash, or, for a user that
    does not exist (``stored`` None), against a dummy hash made the same way
    and so just as slow: an unknown name answers in the time a wrong password
    does, and user names cannot be told apart by timing."""
    global _dummy_hash
    if stored is None:
        if _dummy_hash is None:
            _dummy_hash = hash_password(secrets.token_urlsafe(16))
        check_password(_dummy_hash, password)
        return False
    return check_password(stored, password)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy secret (an API token or a session id):
    enough, since neither can be guessed the way a password can."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(hashed: str) -> str:
    """A token's short id in ``token list`` and ``token revoke``: the start of
    its hash, which says nothing about the token."""
    return hashed[:12]


def new_token() -> str:
    return "ct_" + secrets.token_urlsafe(32)


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def throttle_keys(user_name: str, address: str | None) -> tuple[str, str]:
    """The login throttle's keys for a user name and a client address:
    hashed, so that nothing a client typed is stored as it typed it."""
    return (token_hash("user\0" + user_name[:256]), token_hash("addr\0" + (address or "-")))
