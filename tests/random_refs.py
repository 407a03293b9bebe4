"""Random identifiers so every test owns its data and nothing needs cleaning up."""

from __future__ import annotations

import uuid


def random_suffix() -> str:
    return uuid.uuid4().hex[:10]


def random_org_id(name: str = "") -> str:
    return f"org-{name + '-' if name else ''}{random_suffix()}"
