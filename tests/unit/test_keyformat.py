from __future__ import annotations

import math
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyrack.domain.errors import InvalidInput, Unauthenticated
from keyrack.domain.keyformat import BASE62, BODY_LENGTH, KeyFormat, checksum, new_key_id

FORMAT = KeyFormat("kr")


def test_generated_key_has_prefix_body_and_checksum() -> None:
    key = FORMAT.generate()
    assert key.startswith("kr_")
    assert len(key) == FORMAT.length == 3 + 32 + 6
    assert set(key[3:]) <= set(BASE62)
    assert FORMAT.is_well_formed(key)


def test_random_part_carries_at_least_160_bits() -> None:
    assert BODY_LENGTH * math.log2(62) >= 160


def test_keys_are_unique() -> None:
    keys = {FORMAT.generate() for _ in range(2000)}
    assert len(keys) == 2000


def test_checksum_is_crc32_of_prefix_and_body() -> None:
    key = FORMAT.generate()
    value = 0
    for char in key[-6:]:
        value = value * 62 + BASE62.index(char)
    assert value == zlib.crc32(key[:-6].encode())
    assert checksum(key[:-6]) == key[-6:]


@given(position=st.integers(min_value=3, max_value=40), replacement=st.sampled_from(BASE62))
def test_a_single_typo_is_caught_by_the_checksum(position: int, replacement: str) -> None:
    key = FORMAT.generate()
    if key[position] == replacement:
        return
    typo = key[:position] + replacement + key[position + 1 :]
    assert not FORMAT.is_well_formed(typo)


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "kr_",
        "xx_" + "a" * 38,
        "kr-" + "a" * 38,
        "kr_" + "a" * 37,
        "kr_" + "a" * 39,
        "kr_" + "!" * 38,
    ],
)
def test_malformed_candidates_are_rejected(candidate: str) -> None:
    assert not FORMAT.is_well_formed(candidate)
    with pytest.raises(Unauthenticated) as raised:
        FORMAT.check(candidate)
    assert raised.value.code == "MALFORMED"


def test_other_prefix_is_rejected() -> None:
    other = KeyFormat("acme").generate()
    assert not FORMAT.is_well_formed(other)


@pytest.mark.parametrize("prefix", ["", "k", "KR", "kr_", "1kr", "a" * 17])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidInput):
        KeyFormat(prefix)


def test_start_is_short_and_a_prefix_of_the_key() -> None:
    key = FORMAT.generate()
    start = FORMAT.start_of(key)
    assert key.startswith(start)
    assert len(start) == len("kr_") + 4


def test_key_ids_are_random_and_long_enough() -> None:
    ids = [new_key_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("key-") and len(i) >= 4 + 16 for i in ids)
    assert sorted(ids) != ids  # not sequential
