"""Sealing stored responses that contain a secret (idempotent creates and rotations).

A replayed create must return the same secret, yet keyrack stores secrets only as hashes. So the
stored response is encrypted with AES-256-GCM under a key derived from the pepper with HKDF (a
separate `info`, so it never doubles as the HMAC key), and bound to its record through the
associated data: a sealed body copied into another org's or caller's record fails to open. A
database dump without the pepper reveals no secret; records expire after 24 hours.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class ResponseSealer:
    def __init__(self, pepper: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"keyrack idempotency responses v1",
        ).derive(pepper)
        self._aead = AESGCM(key)

    def seal(self, body: dict[str, Any], *, bound_to: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        plaintext = json.dumps(body, separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, plaintext, bound_to.encode())
        return base64.b64encode(sealed).decode()

    def open(self, sealed: str, *, bound_to: str) -> dict[str, Any] | None:
        """The body, or None when it was sealed under another pepper or for another record."""
        raw = base64.b64decode(sealed)
        try:
            plaintext = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode())
        except InvalidTag:
            return None
        body: dict[str, Any] = json.loads(plaintext)
        return body
