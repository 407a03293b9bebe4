"""Keyed hashing of secrets: only HMAC-SHA256 under a server-side pepper is ever stored."""

from __future__ import annotations

import hashlib
import hmac


class SecretHasher:
    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ValueError("the pepper must be at least 32 bytes")
        self._pepper = pepper

    def hash(self, secret: str) -> bytes:
        return hmac.new(self._pepper, secret.encode("utf-8"), hashlib.sha256).digest()

    @staticmethod
    def matches(expected: bytes, actual: bytes) -> bool:
        return hmac.compare_digest(expected, actual)
