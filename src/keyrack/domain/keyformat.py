"""The key format: `<prefix>_<32 base62 random><6 base62 CRC32>` (GitHub's token design).

The prefix makes keys greppable by secret scanners, the underscore and base62 alphabet keep them
double-click selectable, and the checksum rejects a mistyped or forged key without any lookup.
"""

from __future__ import annotations

import re
import secrets
import zlib

from keyrack.domain.errors import InvalidInput, Unauthenticated

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 32  # 32 * log2(62) = 190 bits from `secrets`, above the 160 required
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
START_BODY_CHARS = 4  # `start` shows the prefix and 4 random characters: 24 bits, useless alone
KEY_ID_LENGTH = 20  # random base62 characters after `key-` (119 bits, never sequential)
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,15}$")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


# Every two-digit base62 string: the checksum runs on every verification, and three table
# lookups are several times faster than six divmods and a join.
_PAIRS = tuple(a + b for a in BASE62 for b in BASE62)
_PAIR_BASE = 62 * 62


def checksum(text: str) -> str:
    number = zlib.crc32(text.encode("ascii"))  # < 62**6, so three pairs are enough
    high, rest = divmod(number, _PAIR_BASE * _PAIR_BASE)
    middle, low = divmod(rest, _PAIR_BASE)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def new_key_id() -> str:
    return "key-" + _random_base62(KEY_ID_LENGTH)


class KeyFormat:
    """Generates and recognises keys for one configured prefix."""

    def __init__(self, prefix: str) -> None:
        if not PREFIX_PATTERN.match(prefix):
            raise InvalidInput(
                "key prefix must be 2-16 lowercase letters or digits, starting with a letter",
                field="key_prefix",
            )
        self.prefix = prefix
        self._head = prefix + "_"
        self._body_start = len(self._head)
        self.length = len(self._head) + BODY_LENGTH + CHECKSUM_LENGTH

    def generate(self) -> str:
        body = self._head + _random_base62(BODY_LENGTH)
        return body + checksum(body)

    def is_well_formed(self, key: str) -> bool:
        """True when `key` has this prefix, the right length and alphabet, and a valid checksum.
        String methods rather than the regex: this runs on every verification."""
        if len(key) != self.length or not key.startswith(self._head):
            return False
        body = key[self._body_start :]
        if not (body.isascii() and body.isalnum()):  # ASCII alphanumerics: the base62 alphabet
            return False
        cut = self.length - CHECKSUM_LENGTH
        return checksum(key[:cut]) == key[cut:]

    def check(self, key: str) -> str:
        if not self.is_well_formed(key):
            raise Unauthenticated("the API key is malformed", code="MALFORMED")
        return key

    def start_of(self, key: str) -> str:
        return key[: len(self._head) + START_BODY_CHARS]
