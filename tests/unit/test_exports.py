"""`keyrack`'s lazy exports: the name list it keeps (so the server never imports the SDK to
answer `from keyrack import <submodule>`) must name exactly what the SDK exports."""

from __future__ import annotations

import keyrack
from keyrack import client


def test_lazy_sdk_names_match_the_sdk_exports() -> None:
    assert set(client.__all__) == keyrack._SDK_NAMES
    for name in client.__all__:
        assert getattr(keyrack, name) is getattr(client, name)
    assert keyrack.Verifier.__module__ == "keyrack.service.verify"
