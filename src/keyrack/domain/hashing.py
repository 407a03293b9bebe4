"""Keyed hashing of secrets: only HMAC-SHA256 under a server-side pepper is ever stored."""

from __future__ import annotations

import hashlib
import hmac

_BLOCK = 64  # SHA-256's block size
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class SecretHasher:
    """HMAC-SHA256 (RFC 2104) with the pepper's padded key blocks hashed once.

    Written out instead of `hmac.digest` because this runs on every verification and OpenSSL 3's
    one-shot HMAC looks the algorithm up on each call: copying two prepared SHA-256 states costs
    less than half. `tests/unit/test_hashing_and_permissions.py` checks it equals `hmac`."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ValueError("the pepper must be at least 32 bytes")
        key = hashlib.sha256(pepper).digest() if len(pepper) > _BLOCK else pepper
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def hash(self, secret: str) -> bytes:
        inner = self._inner.copy()
        inner.update(secret.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    @staticmethod
    def matches(expected: bytes, actual: bytes) -> bool:
        return hmac.compare_digest(expected, actual)
