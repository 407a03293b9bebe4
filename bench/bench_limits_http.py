"""`GET /verify` with a rate limit on Redis against the same without limits, side by side in one
run: one keyrack worker with `KEYRACK_REDIS_URL` set, 1,000 keys of each kind, wrk alternating
between them round by round (goal: limited >= 0.7 of unlimited).

    .venv/bin/python bench/bench_limits_http.py [--redis-url URL] [--rounds 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from common import WrkResult, key_rotation_script, keyrack_env, runtime_for, serve, wrk
from keyrack.runtime import Runtime
from keyrack.service import keys as key_service

ORG = "bench"
# Generous, so every request is admitted and counted: the cost measured is the check itself.
RATE_LIMIT = {"limit": 100_000, "window_seconds": 60}


def issue(runtime: Runtime, count: int, rate_limit: object) -> list[str]:
    return [
        key_service.create_key(
            uow=runtime.uow(write=True),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            org_id=ORG,
            name=f"bench {index}",
            permissions=["read"],
            rate_limit=rate_limit,
            quota=None,
        ).secret
        for index in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--redis-url", default=os.environ.get("KEYRACK_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keys", type=int, default=1000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'keyrack.db'}"
        runtime = runtime_for(url, directory)
        key_service.create_org(uow=runtime.uow(write=True), org_id=ORG)
        scripts = {
            "unlimited": key_rotation_script(
                directory / "unlimited.lua", issue(runtime, options.keys, None)
            ),
            "rate limit on Redis": key_rotation_script(
                directory / "limited.lua", issue(runtime, options.keys, RATE_LIMIT)
            ),
        }
        runtime.close()
        env = {**keyrack_env(url, directory), "KEYRACK_REDIS_URL": options.redis_url}
        server = serve("keyrack.api.app:create_app_from_env", factory=True, env=env)
        results: dict[str, list[WrkResult]] = {name: [] for name in scripts}
        try:
            for script in scripts.values():
                wrk(server.url + "/verify", seconds=2, script=script)  # warm cache and Redis
            for round_number in range(1, options.rounds + 1):
                # Alternate which goes first: a drifting machine load favours neither.
                order = list(scripts) if round_number % 2 else list(reversed(scripts))
                for name in order:
                    results[name].append(
                        wrk(
                            server.url + "/verify",
                            seconds=options.seconds,
                            connections=options.connections,
                            script=scripts[name],
                        )
                    )
                print(
                    f"round {round_number}: "
                    + ", ".join(
                        f"{name} {runs[-1].requests_per_second:,.0f} req/s "
                        f"p99 {runs[-1].p99_ms:.2f} ms"
                        for name, runs in results.items()
                    ),
                    flush=True,
                )
        finally:
            server.stop()
    report(results, options)


def report(results: dict[str, list[WrkResult]], options: argparse.Namespace) -> None:
    for name, runs in results.items():
        assert all(r.non_2xx == 0 for r in runs), f"{name}: non-2xx answers"
    unlimited, limited = results["unlimited"], results["rate limit on Redis"]
    print(f"\nmedian of {options.rounds} rounds, {options.connections} connections, one worker:")
    for name, runs in results.items():
        rps = statistics.median(r.requests_per_second for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        print(f"{name:<22}{rps:>10,.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    ratios = [
        lim.requests_per_second / unl.requests_per_second
        for unl, lim in zip(unlimited, limited, strict=True)
    ]
    medians = statistics.median(r.requests_per_second for r in limited) / statistics.median(
        r.requests_per_second for r in unlimited
    )
    print(
        f"limited / unlimited     {statistics.median(ratios):.2f} median per round, "
        f"{medians:.2f} of medians  (goal >= 0.7); rounds: "
        + ", ".join(f"{ratio:.2f}" for ratio in ratios)
    )


if __name__ == "__main__":
    main()
