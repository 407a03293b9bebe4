"""In-process `Verifier` throughput on SQLite (3): warm (every key cached) and cold (the cache
bypassed, so every verification reads SQLite). One thread, so one core.

    .venv/bin/python bench/bench_inprocess.py [--keys 1000] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import issue_keys, runtime_for
from keyrack.service import keys as key_service


def rate(verify: object, keys: list[str], seconds: float) -> tuple[float, float]:
    """Verifications per wall-clock second and per CPU second of this thread (the machine is
    shared: CPU time is what "per core" means when other processes take turns on it)."""
    assert callable(verify)
    done = 0
    deadline = time.perf_counter() + seconds
    started, cpu_started = time.perf_counter(), time.thread_time()
    while time.perf_counter() < deadline:
        for key in keys:
            verify(key)
        done += len(keys)
    return done / (time.perf_counter() - started), done / (time.thread_time() - cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = runtime_for(f"sqlite:///{Path(tmp, 'keyrack.db')}", Path(tmp))
        key_service.create_org(uow=runtime.uow(write=True), org_id="bench")
        keys = issue_keys(runtime, "bench", options.keys, ["read"])
        verifier, cache = runtime.verifier, runtime.verifier.cache
        assert cache is not None
        warm, cold = [], []
        for round_number in range(1, options.rounds + 1):
            cache.reset(trusted=True)  # as when the change feed is connected
            for key in keys:
                assert verifier.verify(key).valid
            warm.append(rate(verifier.verify, keys, options.seconds))
            cache.reset(trusted=False)  # bypassed: every lookup reads SQLite
            cold.append(rate(verifier.verify, keys, options.seconds))
            print(
                f"round {round_number}: warm {warm[-1][0]:,.0f}/s wall, {warm[-1][1]:,.0f}/s CPU;"
                f" cold {cold[-1][0]:,.0f}/s wall, {cold[-1][1]:,.0f}/s CPU"
            )
        runtime.close()
    for label, runs, goal in (("warm cache", warm, "300,000"), ("cold, SQLite", cold, "10,000")):
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"(3) {label}: {wall:,.0f}/s wall clock, {cpu:,.0f}/s per CPU second (goal {goal})")


if __name__ == "__main__":
    main()
