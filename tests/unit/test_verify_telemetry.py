"""/verify's own reporting: request ids, batched metrics, refusals logged once per interval."""

from __future__ import annotations

import logging
import re
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from keyrack import metrics
from keyrack.api.verify import VerifyEndpoint
from keyrack.api.verify_telemetry import RefusalLog, VerifyTelemetry
from keyrack.metrics import VERIFY_BUCKETS, VerifyRecorder
from tests.unit.test_verifier import FORMAT, Harness
from tests.unit.test_verify_endpoint import call, fallback

GENERATED_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every verify sample of the process-wide metrics, by name and labels."""
    found = {}
    for family in (metrics.verifications, metrics.verify_duration, metrics.verify_cache_lookups):
        for sample in family.collect()[0].samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def delta(before: dict, after: dict) -> dict:  # type: ignore[type-arg]
    return {name: value - before.get(name, 0) for name, value in after.items()}


def endpoint(harness: Harness, recorder: VerifyRecorder, refusals: RefusalLog) -> VerifyEndpoint:
    telemetry = VerifyTelemetry(recorder=recorder, refusals=refusals)
    return VerifyEndpoint(fallback, harness.verifier, max_body_bytes=1024, telemetry=telemetry)


def test_flushed_histogram_equals_observing_one_by_one() -> None:
    """Guards `_add_observations`, which uses prometheus_client's per-bucket values."""
    durations = [0.00005, 0.0001, 0.0003, 0.002, 0.002, 0.07, 3.0]
    recorder = VerifyRecorder(interval=3600)
    before = samples()
    for seconds in durations:
        recorder.record("VALID", seconds, cache_hit=True, now=0.0)
    assert delta(before, samples()) == dict.fromkeys(before, 0)  # batched: nothing yet
    recorder.flush()
    flushed = delta(before, samples())

    expected = Histogram("expected", "x", buckets=VERIFY_BUCKETS, registry=CollectorRegistry())
    for seconds in durations:
        expected.observe(seconds)
    for sample in expected.collect()[0].samples:
        name = sample.name.replace("expected", "keyrack_verify_duration_seconds")
        key = (name, tuple(sorted(sample.labels.items())))
        assert flushed[key] == pytest.approx(sample.value), key
    assert flushed[("keyrack_verifications_total", (("code", "VALID"),))] == len(durations)
    cache_hits = ("keyrack_verify_cache_lookups_total", (("result", "hit"),))
    assert flushed[cache_hits] == len(durations)


def test_recorder_flushes_after_its_interval_and_before_every_exposition() -> None:
    recorder = VerifyRecorder(interval=1.0)
    before = samples()
    recorder.record("NOT_FOUND", 0.001, cache_hit=False, now=10.0)
    recorder.record("NOT_FOUND", 0.001, cache_hit=False, now=10.5)
    assert delta(before, samples())[("keyrack_verifications_total", (("code", "NOT_FOUND"),))] == 0
    recorder.record("MALFORMED", 0.001, cache_hit=None, now=11.0)  # the interval has passed
    counted = delta(before, samples())
    assert counted[("keyrack_verifications_total", (("code", "NOT_FOUND"),))] == 2
    assert counted[("keyrack_verifications_total", (("code", "MALFORMED"),))] == 1
    assert counted[("keyrack_verify_cache_lookups_total", (("result", "miss"),))] == 2
    assert counted[("keyrack_verify_cache_lookups_total", (("result", "hit"),))] == 0

    metrics.verify_recorder.record("DISABLED", 0.001, cache_hit=True, now=0.0)
    text = metrics.exposition()[0].decode()  # what /metrics serves: flushed first
    assert 'keyrack_verifications_total{code="DISABLED"}' in text
    assert metrics.verify_recorder._flush_due is None


def test_admitted_requests_of_limited_keys_are_counted_in_batches() -> None:
    allowed = metrics.rate_limit_decisions.labels("allowed")
    recorder = VerifyRecorder(interval=3600)
    before = allowed._value.get()
    for _ in range(3):
        recorder.record_admitted()
    assert allowed._value.get() == before  # batched: nothing yet
    recorder.flush()
    assert allowed._value.get() == before + 3
    recorder.flush()  # nothing pending: nothing counted twice
    assert allowed._value.get() == before + 3


def test_an_unknown_code_is_counted_as_other() -> None:
    recorder = VerifyRecorder()
    before = samples()
    recorder.record("SOMETHING_NEW", 0.001, cache_hit=None, now=0.0)
    recorder.flush()
    assert delta(before, samples())[("keyrack_verifications_total", (("code", "OTHER"),))] == 1


def test_verify_answers_are_counted_with_cache_hits_and_misses() -> None:
    harness = Harness()
    secret, _ = harness.create(("read",))
    recorder = VerifyRecorder(interval=3600)
    app = endpoint(harness, recorder, RefusalLog())
    before = samples()
    headers = {"X-API-Key": secret}
    assert call(app, "GET", "/verify", headers=headers).status_code == 200  # miss, then cached
    assert call(app, "GET", "/verify", headers=headers).status_code == 200  # hit
    assert call(app, "GET", "/verify?permission=admin", headers=headers).status_code == 403  # hit
    assert call(app, "GET", "/verify", headers={"X-API-Key": "kr_bad"}).status_code == 401
    assert call(app, "GET", "/verify", headers={"X-API-Key": FORMAT.generate()}).status_code == 401
    assert call(app, "PUT", "/verify").status_code == 405
    recorder.flush()
    counted = {name: value for name, value in delta(before, samples()).items() if value}
    assert counted == {
        ("keyrack_verifications_total", (("code", "VALID"),)): 2,
        ("keyrack_verifications_total", (("code", "INSUFFICIENT_PERMISSIONS"),)): 1,
        ("keyrack_verifications_total", (("code", "MALFORMED"),)): 1,
        ("keyrack_verifications_total", (("code", "NOT_FOUND"),)): 1,
        ("keyrack_verifications_total", (("code", "METHOD_NOT_ALLOWED"),)): 1,
        ("keyrack_verify_cache_lookups_total", (("result", "hit"),)): 2,
        ("keyrack_verify_cache_lookups_total", (("result", "miss"),)): 2,
        **{
            (name, labels): value
            for (name, labels), value in counted.items()
            if name.startswith("keyrack_verify_duration_seconds")
        },
    }
    assert counted[("keyrack_verify_duration_seconds_count", ())] == 6


def test_every_answer_carries_a_request_id_honoured_or_generated() -> None:
    harness = Harness()
    secret, _ = harness.create(("read",))
    app = endpoint(harness, VerifyRecorder(), RefusalLog())
    answers = [
        call(app, "GET", "/verify", headers={"X-API-Key": secret}),
        call(app, "GET", "/verify", headers={"X-API-Key": secret}),  # the cached 200 answer
        call(app, "GET", "/verify?permission=admin", headers={"X-API-Key": secret}),
        call(app, "GET", "/verify"),
        call(app, "POST", "/verify", content=b"{", headers={"content-type": "application/json"}),
        call(app, "DELETE", "/verify"),
    ]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(GENERATED_ID.fullmatch(request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)
    assert [answer.headers.get_list("x-request-id") for answer in answers[:2]] == [
        [ids[0]],
        [ids[1]],
    ]  # the cached answer's header list is not grown by earlier answers
    honoured = call(app, "GET", "/verify", headers={"X-API-Key": secret, "X-Request-ID": "t-1.a"})
    assert honoured.headers["x-request-id"] == "t-1.a"
    # A key is never echoed as a request id (the underscore is outside the allowed characters).
    refused = call(app, "GET", "/verify", headers={"X-Request-ID": secret})
    assert GENERATED_ID.fullmatch(refused.headers["x-request-id"])


def verify_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "keyrack.verify"]


def test_refusals_are_logged_once_per_interval_per_code_and_never_with_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = Harness()
    secret, key_id = harness.create(("read",))
    unknown = FORMAT.generate()
    ticks = Ticks()
    app = endpoint(harness, VerifyRecorder(), RefusalLog(interval=10, clock=ticks))
    with caplog.at_level(logging.INFO, logger="keyrack.verify"):
        for _ in range(20):
            assert call(app, "GET", "/verify", headers={"X-API-Key": secret}).status_code == 200
        for _ in range(5):
            call(app, "GET", "/verify", headers={"X-API-Key": unknown, "X-Request-ID": "r-1"})
        call(app, "GET", "/verify?permission=admin", headers={"X-API-Key": secret})
        call(app, "POST", "/verify", json={"key": secret + "x"})
    records = verify_records(caplog)
    assert [(r.__dict__["code"], r.__dict__["held_back"]) for r in records] == [
        ("NOT_FOUND", 0),
        ("INSUFFICIENT_PERMISSIONS", 0),
        ("MALFORMED", 0),
    ]  # no line for the 20 successes, one for five NOT_FOUND
    not_found, insufficient, _ = (record.__dict__ for record in records)
    assert (not_found["status"], not_found["request_id"], not_found["key_id"]) == (401, "r-1", None)
    assert (insufficient["status"], insufficient["key_id"]) == (403, key_id)
    assert insufficient["org_id"] == "acme" and insufficient["method"] == "GET"
    caplog.clear()
    ticks.now += 10
    with caplog.at_level(logging.INFO, logger="keyrack.verify"):
        call(app, "GET", "/verify", headers={"X-API-Key": unknown})
    [again] = verify_records(caplog)
    assert (again.__dict__["code"], again.__dict__["held_back"]) == ("NOT_FOUND", 4)
    for record in [*records, again]:
        text = repr(record.__dict__) + record.getMessage()
        assert secret not in text and unknown not in text


def test_metrics_off_records_nothing() -> None:
    harness = Harness()
    secret, _ = harness.create(("read",))
    app = VerifyEndpoint(
        fallback,
        harness.verifier,
        max_body_bytes=1024,
        telemetry=VerifyTelemetry(recorder=None, refusals=None),
    )
    before = samples()
    assert call(app, "GET", "/verify", headers={"X-API-Key": secret}).status_code == 200
    metrics.verify_recorder.flush()
    assert not any(delta(before, samples()).values())


def test_inline_valid_hits_are_counted_as_valid_cache_hits() -> None:
    """The protocol's fast path reports through `valid_hit`: the same series as `record`."""
    recorder = VerifyRecorder(interval=3600)
    telemetry = VerifyTelemetry(recorder=recorder, refusals=None)
    before = samples()
    started = time.perf_counter()
    for _ in range(3):
        telemetry.valid_hit(started)
    recorder.record("VALID", 0.00001, cache_hit=True, now=0.0)
    recorder.flush()
    changed = {k: v for k, v in delta(before, samples()).items() if v}
    assert changed[("keyrack_verifications_total", (("code", "VALID"),))] == 4
    assert changed[("keyrack_verify_cache_lookups_total", (("result", "hit"),))] == 4
    assert changed[("keyrack_verify_duration_seconds_count", ())] == 4
