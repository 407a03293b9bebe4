"""HTTP benchmarks, side by side in one run: GET /verify against a raw-ASGI floor (1), with
1,000,000 keys stored against 1,000 (2), an authenticated list of 100 keys (5), and /verify
with metrics and JSON logging on against both off (6).

    .venv/bin/python bench/bench_http.py [--rounds 3] [--seconds 10] [--connections 32]
    .venv/bin/python bench/bench_http.py --only small,quiet,metrics,logs --fresh-servers \
        --rounds 6 --seconds 4                                                     # (6) alone

`--reference-src DIR` adds a server running another checkout's `src/` (for instance
`git archive main src | tar -x -C /tmp/main`) on the same database, as a before/after control.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import (
    Served,
    WrkResult,
    bulk_fill,
    issue_keys,
    key_rotation_script,
    keyrack_env,
    runtime_for,
    serve,
    wrk,
)
from keyrack.logs import log_config
from keyrack.service import keys as key_service

ORG = "bench"
APP = "keyrack.api.app:create_app_from_env"
SCENARIOS = ("baseline", "small", "asgi", "quiet", "metrics", "logs", "multiproc", "large", "list")


def prepare(directory: Path, stored: int) -> tuple[str, list[str], str]:
    """A SQLite database with `stored` keys; returns its URL, 1,000 usable keys and an admin."""
    database = directory / "keyrack.db"
    url = f"sqlite:///{database}"
    runtime = runtime_for(url, directory)
    key_service.create_org(uow=runtime.uow(write=True), org_id=ORG)
    key_service.create_org(uow=runtime.uow(write=True), org_id="listing")
    usable = issue_keys(runtime, ORG, 1000, ["read"])
    admin = issue_keys(runtime, "listing", 100, ["read", "write", "admin"])[0]
    runtime.close()
    if stored > 1000:
        bulk_fill(str(database), "filler", stored - 1000)
    return url, usable, admin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument("--reference-src", type=Path, help="another checkout to compare with")
    parser.add_argument(
        "--fresh-servers",
        action="store_true",
        help="new server processes every round: on a shared machine one process can run slower "
        "than an identical one for its whole life (where the scheduler put it)",
    )
    options = parser.parse_args()
    chosen = [name for name in SCENARIOS if name in options.only.split(",")]
    if options.reference_src:
        chosen.insert(chosen.index("small") + 1 if "small" in chosen else 0, "reference")
    with tempfile.TemporaryDirectory() as tmp:
        results = run_rounds(Path(tmp), chosen, options)
    report(results, options)


def run_rounds(
    tmp: Path, chosen: list[str], options: argparse.Namespace
) -> dict[str, list[WrkResult]]:
    small_dir, large_dir = tmp / "small", tmp / "large"
    small_url, small_keys, admin = prepare(small_dir, 1000)
    scripts = {"small": key_rotation_script(tmp / "small.lua", small_keys)}
    # Production logging (`keyrack serve`'s JSON lines at info) for the servers with metrics on.
    logging_on = tmp / "log-config.json"
    logging_on.write_text(json.dumps(log_config("info")))
    on = ["--log-config", str(logging_on)]
    multiproc_dir = tmp / "metrics"
    multiproc_dir.mkdir()
    small_env = keyrack_env(small_url, small_dir)
    starts = {
        "baseline": lambda: serve("baseline_app:app", factory=False),
        "small": lambda: serve(APP, factory=True, env=small_env, args=on),
        # uvicorn's own protocol: every /verify goes through ASGI (the path without the fast one)
        "asgi": lambda: serve(APP, factory=True, env=small_env, args=on, http="httptools"),
        "quiet": lambda: serve(APP, factory=True, env={**small_env, "KEYRACK_METRICS": "false"}),
        # one of the two at a time: which of them costs what
        "metrics": lambda: serve(APP, factory=True, env=small_env),
        "logs": lambda: serve(
            APP, factory=True, env={**small_env, "KEYRACK_METRICS": "false"}, args=on
        ),
        "multiproc": lambda: serve(
            APP,
            factory=True,
            env={**small_env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)},
            args=on,
        ),
    }
    if options.reference_src:
        reference_env = {**small_env, "PYTHONPATH": str(options.reference_src.resolve() / "src")}
        starts["reference"] = lambda: serve(APP, factory=True, env=reference_env, args=on)
    if "large" in chosen:
        print(f"seeding {options.stored:,} keys ...", flush=True)
        large_url, large_keys, _ = prepare(large_dir, options.stored)
        scripts["large"] = key_rotation_script(tmp / "large.lua", large_keys)
        large_env = keyrack_env(large_url, large_dir)
        starts["large"] = lambda: serve(APP, factory=True, env=large_env, args=on)
    wanted = [name for name in starts if name in chosen or (name == "small" and "list" in chosen)]
    servers: dict[str, Served] = {}
    results: dict[str, list[WrkResult]] = {name: [] for name in chosen}
    run = {"seconds": options.seconds, "connections": options.connections}

    def target(name: str) -> tuple[str, dict[str, object]]:
        if name == "list":
            headers = {"Authorization": f"Bearer {admin}"}
            return servers["small"].url + "/orgs/listing/api_keys", {"headers": headers}
        # the same wrk script for the floor too: equal client-side cost
        return servers[name].url + "/verify", {"script": scripts.get(name, scripts["small"])}

    def start_servers() -> None:
        for name in wanted:
            servers[name] = starts[name]()
            if name != "baseline":
                url, extra = target(name)
                wrk(url, seconds=2, **extra)  # type: ignore[arg-type]  # warm the cache

    def stop_servers() -> None:
        for server in servers.values():
            server.stop()
        servers.clear()

    try:
        start_servers()
        for round_number in range(1, options.rounds + 1):
            if options.fresh_servers and round_number > 1:
                stop_servers()
                start_servers()
            # Alternate the order: on a loaded machine the later run of a pair is often slower.
            order = chosen if round_number % 2 else list(reversed(chosen))
            for name in order:
                url, extra = target(name)
                server = servers["small" if name == "list" else name]
                cpu_before = server.cpu_seconds()
                result = wrk(url, **run, **extra)  # type: ignore[arg-type]
                cpu = server.cpu_seconds() - cpu_before
                result.server_cpu_us = cpu / max(result.requests, 1) * 1e6
                results[name].append(result)
            print(f"round {round_number}: " + ", ".join(
                f"{name} {r[-1].requests_per_second:,.0f} req/s p99 {r[-1].p99_ms:.2f} ms"
                for name, r in results.items()
            ), flush=True)  # fmt: skip
    finally:
        stop_servers()
    return results


def per_round(results: dict[str, list[WrkResult]], numerator: str, denominator: str) -> float:
    """The median of per-round ratios: adjacent runs in one round share the machine's load, so
    their ratio is steadier on a shared machine than the ratio of medians (printed too)."""
    return statistics.median(
        top.requests_per_second / bottom.requests_per_second
        for top, bottom in zip(results[numerator], results[denominator], strict=True)
    )


def report(results: dict[str, list[WrkResult]], options: argparse.Namespace) -> None:
    for name, runs in results.items():
        assert all(r.non_2xx == 0 for r in runs), f"{name}: non-2xx answers"
    median = {
        name: statistics.median(r.requests_per_second for r in runs)
        for name, runs in results.items()
    }
    p99 = {name: statistics.median(r.p99_ms for r in runs) for name, runs in results.items()}
    p50 = {name: statistics.median(r.p50_ms for r in runs) for name, runs in results.items()}
    print(f"\nmedian of {options.rounds} rounds, {options.connections} connections, one worker:")
    labels = {
        "baseline": "raw ASGI floor",
        "small": "GET /verify, 1,000 keys",
        "reference": "  the reference checkout",
        "asgi": "  through ASGI only",
        "quiet": "  metrics and logs off",
        "metrics": "  metrics on, logs off",
        "logs": "  logs on, metrics off",
        "multiproc": "  multiprocess metrics",
        "large": f"GET /verify, {options.stored:,} keys",
    }
    cpu = {
        name: statistics.median(r.server_cpu_us or 0.0 for r in runs)
        for name, runs in results.items()
    }
    for name, label in labels.items():
        if name in results:
            print(
                f"{label:<30}{median[name]:>10,.0f} req/s  p99 {p99[name]:.2f} ms"
                f"  server CPU {cpu[name]:.1f} us/request"
            )
    ratios = [
        ("(1) verify / raw ASGI    ", "small", "baseline", "(goal >= 0.75)"),
        ("    ASGI only / raw ASGI ", "asgi", "baseline", "(without the protocol's fast path)"),
        ("(2) 1M keys / 1k keys    ", "large", "small", "(goal >= 0.9)"),
        ("(6) metrics on / off     ", "small", "quiet", "(goal >= 0.95)"),
        ("    metrics only / off   ", "metrics", "quiet", ""),
        ("    logs only / off      ", "logs", "quiet", ""),
        ("    this tree / reference", "small", "reference", ""),
        ("(6) multiprocess / off   ", "multiproc", "quiet", "(goal >= 0.95)"),
    ]
    for label, top, bottom, goal in ratios:
        if top in results and bottom in results:
            print(
                f"{label} {per_round(results, top, bottom):.2f} median per round, "
                f"{median[top] / median[bottom]:.2f} of medians  {goal}"
            )
            print(
                "    per round: "
                + ", ".join(
                    f"{t.requests_per_second / b.requests_per_second:.3f}"
                    for t, b in zip(results[top], results[bottom], strict=True)
                )
            )
            # Server CPU per request is far less disturbed by other load than throughput: the
            # throughput one dedicated core would give is its inverse.
            cpu_ratio = statistics.median(
                (b.server_cpu_us or 0.0) / (t.server_cpu_us or 1.0)
                for t, b in zip(results[top], results[bottom], strict=True)
            )
            print(
                f"    server CPU per request: {cpu[top]:.1f} vs {cpu[bottom]:.1f} us (medians), "
                f"throughput ratio on a dedicated core {cpu_ratio:.3f} median per round"
            )
    if "small" in results:
        print(f"(1) verify p99            {p99['small']:.2f} ms  (goal < 5 ms)")
    if "list" in results:
        print(f"(5) list 100 keys         {median['list']:>10,.0f} req/s  p50 {p50['list']:.2f} ms")


if __name__ == "__main__":
    main()
