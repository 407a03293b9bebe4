"""last_used_at stamps: one write per key per flush, kept when the write fails."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pytest

from keyrack.service.usage import LastUsedRecorder


def test_flush_writes_each_key_once_with_its_latest_use() -> None:
    writes: list[list[tuple[str, datetime]]] = []
    recorder = LastUsedRecorder(write=lambda stamps: writes.append(list(stamps)))
    for index in range(1000):
        recorder.seen("key-a", 1_700_000_000.0 + index / 100)
        recorder.seen("key-b", 1_700_000_000.0)
    assert writes == []  # nothing is written on the request path
    assert recorder.flush() == 2
    assert len(writes) == 1
    stamps = dict(writes[0])
    assert set(stamps) == {"key-a", "key-b"}
    assert stamps["key-a"].timestamp() == 1_700_000_009.0
    assert recorder.flush() == 0 and len(writes) == 1


def test_failed_write_keeps_the_stamps_for_the_next_flush() -> None:
    attempts: list[int] = []

    def flaky(stamps: Sequence[tuple[str, datetime]]) -> None:
        attempts.append(len(stamps))
        if len(attempts) == 1:
            raise OSError("database down")

    recorder = LastUsedRecorder(write=flaky)
    recorder.seen("key-a", 1_700_000_000.0)
    with pytest.raises(OSError, match="database down"):
        recorder.flush()
    assert recorder.flush() == 1
    assert attempts == [1, 1]
