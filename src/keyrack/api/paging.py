"""Pagination over HTTP: the `limit` and `cursor` query parameters and the RFC 8288 Link header."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from keyrack.domain.pagination import MAX_PAGE

PageLimit = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Page size, 1-{MAX_PAGE}", examples=[100])
]
PageCursor = Annotated[
    str | None,
    Query(max_length=512, description="From the previous page's Link rel=next; opaque"),
]
LINK_HEADER_DOC = {
    "Link": {
        "description": 'The next page, when there is one: `</...?limit=N&cursor=C>; rel="next"`',
        "schema": {"type": "string"},
    }
}


def next_link(path: str, limit: int, cursor: str | None) -> dict[str, str]:
    """RFC 8288 Link header announcing the next page (none on the last page)."""
    return {"Link": f'<{path}?limit={limit}&cursor={cursor}>; rel="next"'} if cursor else {}
