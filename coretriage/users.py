"""Passwords and API tokens: only hashes are stored. Shared by the CLI
(``user add``, ``token add``) and the web UI's login and bearer tokens."""

from __future__ import annotations

import hashlib
import secrets

ROLES = ("viewer", "admin")


def hash_password(password: str) -> str:
    from werkzeug.security import generate_password_hash
    return generate_password_hash(password)


def check_password(stored: str, password: str) -> bool:
    from werkzeug.security import check_password_hash
    return check_password_hash(stored, password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ct_" + secrets.token_urlsafe(32)
