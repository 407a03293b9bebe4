"""`GET /verify` with a rate limit on Redis against the same without limits, side by side in one
run: one keyrack worker with `KEYRACK_REDIS_URL` set, 1,000 keys of each kind, wrk alternating
between them round by round (goal: limited >= 0.7 of unlimited).

    .venv/bin/python bench/bench_limits_http.py [--redis-url URL] [--rounds 5] [--seconds 10]
    .venv/bin/python bench/bench_limits_http.py --own-redis   # a private Redis, Unix socket

Each round runs at every `--connections` count (default 32; `--connections 8,32,128` for more).
The report gives, beside throughput, how much of a core the worker used and how many requests a
script call carried. The unlimited worker is saturated (1.0); the limited one nearly so with 32
connections (0.97-0.99), while with few connections it waits for Redis's round trip part of
the time (0.88 with 8), so the throughput ratio measures that wait as well as the limit's CPU
cost; the per-CPU-second ratio measures the cost alone.

`--own-redis` starts a private redis-server (no persistence) on a Unix socket in a temporary
directory instead of using `--redis-url`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from common import WrkResult, key_rotation_script, keyrack_env, runtime_for, serve, wrk
from keyrack.runtime import Runtime
from keyrack.service import keys as key_service

ORG = "bench"
# Generous, so every request is admitted and counted: the cost measured is the check itself.
RATE_LIMIT = {"limit": 100_000, "window_seconds": 60}


@dataclass
class Run:
    wrk: WrkResult
    server_cpu_us: float  # the keyrack worker's CPU time per request
    redis_cpu_us: float  # Redis's time in the limit script per request (INFO commandstats)
    worker_cores: float  # the worker's CPU time over the run's time: 1.0 is saturated
    batch: float  # requests per script call (0: none made)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def script_stats(client: redis.Redis) -> tuple[int, int]:
    """Script calls so far and Redis's time in them (us), from INFO commandstats."""
    stats = client.info("commandstats")
    scripts = [v for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")]
    return sum(int(v["calls"]) for v in scripts), sum(int(v["usec"]) for v in scripts)


def measured(
    url: str,
    pid: int,
    client: redis.Redis,
    options: argparse.Namespace,
    script: Path,
    connections: int,
) -> Run:
    cpu, (calls, usec) = process_cpu_seconds(pid), script_stats(client)
    result = wrk(url, seconds=options.seconds, connections=connections, script=script)
    requests = result.requests_per_second * options.seconds
    spent = process_cpu_seconds(pid) - cpu
    calls_after, usec_after = script_stats(client)
    return Run(
        wrk=result,
        server_cpu_us=spent / requests * 1e6,
        redis_cpu_us=(usec_after - usec) / requests,
        worker_cores=spent / options.seconds,
        batch=requests / (calls_after - calls) if calls_after > calls else 0.0,
    )


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[str]:
    """A redis-server of our own on a Unix socket, without persistence; its URL."""
    socket = directory / "redis.sock"
    command = ["redis-server", "--port", "0", "--unixsocket", str(socket), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"unix://{socket}"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[32],
        help="comma-separated connection counts, each run every round (default 32)",
    )
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--own-redis", action="store_true", help="a private Redis, Unix socket")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        if options.own_redis:
            options.redis_url = stack.enter_context(private_redis(directory))
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
        results: dict[tuple[int, str], list[Run]] = {
            (connections, name): [] for connections in options.connections for name in scripts
        }
        redis_client = redis.Redis.from_url(options.redis_url)
        try:
            for script in scripts.values():
                wrk(server.url + "/verify", seconds=2, script=script)  # warm cache and Redis
            for round_number in range(1, options.rounds + 1):
                for connections in options.connections:
                    # Alternate which goes first: a drifting machine load favours neither.
                    order = list(scripts) if round_number % 2 else list(reversed(scripts))
                    for name in order:
                        results[connections, name].append(
                            measured(
                                server.url + "/verify",
                                server.process.pid,
                                redis_client,
                                options,
                                scripts[name],
                                connections,
                            )
                        )
                    print(
                        f"round {round_number}, {connections} connections: "
                        + ", ".join(
                            f"{name} {runs[-1].wrk.requests_per_second:,.0f} req/s "
                            f"p99 {runs[-1].wrk.p99_ms:.2f} ms, server CPU "
                            f"{runs[-1].server_cpu_us:.0f} us/req "
                            f"({runs[-1].worker_cores:.2f} of a core)"
                            for (count, name), runs in results.items()
                            if count == connections
                        ),
                        flush=True,
                    )
        finally:
            server.stop()
            redis_client.close()
    for connections in options.connections:
        report({name: results[connections, name] for name in scripts}, options, connections)


def report(results: dict[str, list[Run]], options: argparse.Namespace, connections: int) -> None:
    for name, runs in results.items():
        assert all(r.wrk.non_2xx == 0 for r in runs), f"{name}: non-2xx answers"
    unlimited, limited = results["unlimited"], results["rate limit on Redis"]
    print(f"\nmedian of {options.rounds} rounds, {connections} connections, one worker:")
    for name, runs in results.items():
        rps = statistics.median(r.wrk.requests_per_second for r in runs)
        p50 = statistics.median(r.wrk.p50_ms for r in runs)
        p99 = statistics.median(r.wrk.p99_ms for r in runs)
        cpu = statistics.median(r.server_cpu_us for r in runs)
        redis_cpu = statistics.median(r.redis_cpu_us for r in runs)
        cores = statistics.median(r.worker_cores for r in runs)
        batch = statistics.median(r.batch for r in runs)
        print(
            f"{name:<22}{rps:>10,.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
            f"server CPU {cpu:.0f} us/req ({cores:.2f} of a core)  Redis {redis_cpu:.0f} us/req"
            + (f" in batches of {batch:.1f}" if batch else "")
        )
    ratios = [
        lim.wrk.requests_per_second / unl.wrk.requests_per_second
        for unl, lim in zip(unlimited, limited, strict=True)
    ]
    cpu_ratios = [
        unl.server_cpu_us / lim.server_cpu_us for unl, lim in zip(unlimited, limited, strict=True)
    ]
    print(
        f"limited / unlimited     {statistics.median(ratios):.2f} median per round (goal >= 0.7);"
        " rounds: " + ", ".join(f"{ratio:.2f}" for ratio in ratios)
    )
    print(
        "per server CPU second  "
        f"{statistics.median(cpu_ratios):.2f} median per round (what one dedicated core would"
        " give, Redis elsewhere); rounds: " + ", ".join(f"{ratio:.2f}" for ratio in cpu_ratios)
    )


if __name__ == "__main__":
    main()
