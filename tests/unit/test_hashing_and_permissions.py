from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyrack.domain.errors import InvalidInput, PermissionDenied
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.model import check_key_id, check_org_id, normalize_name
from keyrack.domain.permissions import check_grant, normalize_permissions, require


def test_hash_is_hmac_keyed_by_pepper() -> None:
    one = SecretHasher(b"a" * 32)
    two = SecretHasher(b"b" * 32)
    assert one.hash("kr_secret") == one.hash("kr_secret")
    assert one.hash("kr_secret") != two.hash("kr_secret")
    assert len(one.hash("kr_secret")) == 32
    assert b"kr_secret" not in one.hash("kr_secret")


@settings(deadline=None)  # a shared, loaded machine: no per-example time limit
@given(
    pepper=st.binary(min_size=32, max_size=200),
    secret=st.text(min_size=0, max_size=100),
)
def test_hash_equals_the_standard_library_hmac(pepper: bytes, secret: str) -> None:
    expected = hmac.new(pepper, secret.encode("utf-8"), hashlib.sha256).digest()
    hasher = SecretHasher(pepper)
    assert hasher.hash(secret) == expected
    assert hasher.hash(secret) == expected  # the prepared states are not consumed


def test_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretHasher(b"short")


def test_matches_compares_digests() -> None:
    hasher = SecretHasher(b"p" * 32)
    digest = hasher.hash("x")
    assert hasher.matches(digest, hasher.hash("x"))
    assert not hasher.matches(digest, hasher.hash("y"))


def test_permissions_are_validated_and_canonically_ordered() -> None:
    assert normalize_permissions(["write", "read"]) == ("read", "write")
    for bad in ([], ["root"], ["read", "read"], [1]):
        with pytest.raises(InvalidInput) as raised:
            normalize_permissions(bad)
        assert raised.value.field == "permissions"


def test_grant_rule_allows_only_held_permissions() -> None:
    check_grant(("read", "admin"), ("read",))
    check_grant(("read", "write", "admin"), ("read", "write", "admin"))
    with pytest.raises(PermissionDenied, match="write"):
        check_grant(("read", "admin"), ("read", "write"))


def test_require_names_missing_permissions() -> None:
    require(("admin",), ("admin",))
    with pytest.raises(PermissionDenied, match="admin"):
        require(("read", "write"), ("admin",))


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a" * 129, "bad\nname", "tab\there", "nul\x00", "\n\u00ee\x1d", " " + "a" * 128],
)
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        normalize_name(name)
    assert raised.value.field == "name"


def test_names_are_trimmed() -> None:
    assert normalize_name("  My Key  ") == "My Key"
    assert normalize_name("é" * 128) == "é" * 128


@pytest.mark.parametrize("org_id", ["acme", "org-1", "a.b_c-d", "A" * 64])
def test_good_org_ids(org_id: str) -> None:
    assert check_org_id(org_id) == org_id


@pytest.mark.parametrize("org_id", ["", "-acme", "a" * 65, "ac me", "a/b", "ü"])
def test_bad_org_ids(org_id: str) -> None:
    with pytest.raises(InvalidInput):
        check_org_id(org_id)


@pytest.mark.parametrize("key_id", ["key", "key-", "key-a/b", "KEY-abc", "key-" + "a" * 65])
def test_bad_key_ids(key_id: str) -> None:
    with pytest.raises(InvalidInput):
        check_key_id(key_id)
