"""What the sync and async clients share: a call's description, the retry rule, reading answers.

Both clients only send requests and sleep; every decision lives here, so they cannot drift.
The retry loop is hand-written rather than tenacity/stamina: the rules (which statuses, honour
`Retry-After`, replay only what is safe to replay, one Idempotency-Key per logical call) are the
substance, a library would still need all of them as custom predicates.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from keyrack import __version__
from keyrack.client.errors import (
    ConnectionFailed,
    InvalidResponse,
    error_for,
    problem_fields,
    retry_after_seconds,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

USER_AGENT = f"keyrack-python/{__version__}"
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})  # idempotent by RFC 9110
# Answers that mean "not done, try again": a proxy's or the server's transient failure.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
# Transport failures before the request left: replaying them is safe for any method.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical API call: sent once, or again on retry with the same Idempotency-Key."""

    method: str
    url: str
    parse: Callable[[httpx.Response], T]
    params: Sequence[tuple[str, str]] = ()
    json: Any = None
    idempotency_key: str | None = None
    authenticated: bool = True
    # Statuses that are an answer for this call rather than an error (verify's refusals).
    verdicts: frozenset[int] = frozenset()
    replay_safe: bool | None = None  # None: decided by the method and the Idempotency-Key

    @property
    def may_replay(self) -> bool:
        """May an attempt whose outcome is unknown (a 502, a read timeout) be sent again?"""
        if self.replay_safe is not None:
            return self.replay_safe
        return self.method in SAFE_METHODS or self.idempotency_key is not None

    def following(self, url: str) -> Call[T]:
        """The same call on another page (the `Link: rel="next"` URL carries the query)."""
        return replace(self, url=url, params=())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (spreads clients that failed together)."""

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0  # a longer Retry-After is reported, not slept through
    jitter: Callable[[float, float], float] = field(default=random.uniform)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        delay = self.jitter(0.0, ceiling)
        return delay if retry_after is None else max(retry_after, delay)

    def delay_before_retry(
        self, call: Call[Any], attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to stop with `outcome`."""
        if attempt >= self.max_retries:
            return None
        if isinstance(outcome, httpx.TransportError):
            if isinstance(outcome, NOT_SENT_ERRORS) or call.may_replay:
                return self.backoff(attempt)
            return None
        status = outcome.status_code
        # 429: the server refused without doing anything, so resending is safe for any call.
        # 409 IDEMPOTENCY_IN_FLIGHT: our earlier attempt is still running; its answer will come.
        retryable = (
            status == 429
            or (status in TRANSIENT_STATUSES and call.may_replay)
            or (status == 409 and call.idempotency_key is not None and _in_flight(outcome))
        )
        if status in call.verdicts or not retryable:
            return None
        retry_after = retry_after_seconds(outcome.headers)
        if retry_after is not None and retry_after > self.max_retry_after:
            return None  # waiting that long is the caller's decision: the error carries it
        return self.backoff(attempt, retry_after)


def _in_flight(response: httpx.Response) -> bool:
    return bool(problem_fields(response)["code"] == "IDEMPOTENCY_IN_FLIGHT")


def checked_base_url(base_url: str) -> httpx.URL:
    """The server's URL, refused early (ValueError) when it cannot work, e.g. `localhost:8000`."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as error:
        raise ValueError(f"invalid keyrack server URL {base_url!r}: {error}") from error
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"the keyrack server URL needs http:// or https:// and a host: {base_url!r}"
        )
    return url


def build_request(
    http: httpx.Client | httpx.AsyncClient, call: Call[Any], api_key: str | None
) -> httpx.Request:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if call.authenticated and api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if call.idempotency_key:
        headers["Idempotency-Key"] = call.idempotency_key
    return http.build_request(
        call.method, call.url, params=list(call.params) or None, json=call.json, headers=headers
    )


def finish(call: Call[T], outcome: httpx.Response | httpx.TransportError) -> T:
    """The call's result, or the typed exception for its failure."""
    if isinstance(outcome, httpx.TransportError):
        request = outcome.request if _has_request(outcome) else None
        where = f" ({request.method} {request.url.netloc.decode()})" if request else ""
        silent = isinstance(outcome, httpx.TimeoutException) and not isinstance(
            outcome, httpx.ConnectTimeout
        )
        what = (
            "the keyrack server did not answer in time"
            if silent
            else "cannot reach the keyrack server"
        )
        reason = f"{type(outcome).__name__}" + (f": {outcome}" if str(outcome) else "")
        raise ConnectionFailed(f"{what}{where}: {reason}") from outcome
    if outcome.is_success or outcome.status_code in call.verdicts:
        try:
            return call.parse(outcome)
        except (ValidationError, ValueError) as error:
            raise InvalidResponse(
                f"unexpected answer to {call.method} {outcome.request.url.path}: {error}"
            ) from error
    raise error_for(outcome)


def _has_request(error: httpx.TransportError) -> bool:
    try:
        error.request  # noqa: B018 - httpx raises RuntimeError when no request is attached
    except RuntimeError:
        return False
    return True


def model(model_type: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model_type.model_validate_json(response.content)


def nothing(_response: httpx.Response) -> None:
    return None


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_url: str | None


@functools.cache  # building a TypeAdapter costs milliseconds: once per model, not per call
def page_of(model_type: type[M]) -> Callable[[httpx.Response], Page[M]]:
    adapter = TypeAdapter(list[model_type])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> Page[M]:
        items: list[M] = adapter.validate_json(response.content)
        # httpx parses RFC 8288 Link headers itself.
        next_url = response.links.get("next", {}).get("url")
        if next_url is not None and response.request.url.join(next_url) == response.request.url:
            raise InvalidResponse("the next page link points at the same page")
        return Page(items=items, next_url=next_url)

    return parse
