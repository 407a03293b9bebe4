"""HTTP benchmarks, side by side in one run: GET /verify against a raw-ASGI floor (1), with
1,000,000 keys stored against 1,000 (2), and an authenticated list of 100 keys (5).

    .venv/bin/python bench/bench_http.py [--rounds 3] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import (
    WrkResult,
    bulk_fill,
    issue_keys,
    key_rotation_script,
    keyrack_env,
    runtime_for,
    serve,
    wrk,
)
from keyrack.service import keys as key_service

ORG = "bench"


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
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small_dir, large_dir = Path(tmp, "small"), Path(tmp, "large")
        small_url, small_keys, admin = prepare(small_dir, 1000)
        print(f"seeding {options.stored:,} keys ...", flush=True)
        large_url, large_keys, _ = prepare(large_dir, options.stored)
        small_script = key_rotation_script(Path(tmp, "small.lua"), small_keys)
        large_script = key_rotation_script(Path(tmp, "large.lua"), large_keys)
        servers = {
            "baseline": serve("baseline_app:app", factory=False),
            "small": serve(
                "keyrack.api.app:create_app_from_env", factory=True,
                env=keyrack_env(small_url, small_dir),
            ),
            "large": serve(
                "keyrack.api.app:create_app_from_env", factory=True,
                env=keyrack_env(large_url, large_dir),
            ),
        }  # fmt: skip
        results: dict[str, list[WrkResult]] = {name: [] for name in ("baseline", "small", "large")}
        results["list"] = []
        run = {"seconds": options.seconds, "connections": options.connections}
        try:
            for name, script in (("small", small_script), ("large", large_script)):
                wrk(servers[name].url + "/verify", seconds=2, script=script)  # warm the cache
            for round_number in range(1, options.rounds + 1):
                results["baseline"].append(  # the same wrk script: equal client-side cost
                    wrk(servers["baseline"].url + "/verify", script=small_script, **run)  # type: ignore[arg-type]
                )
                results["small"].append(
                    wrk(servers["small"].url + "/verify", script=small_script, **run)  # type: ignore[arg-type]
                )
                results["large"].append(
                    wrk(servers["large"].url + "/verify", script=large_script, **run)  # type: ignore[arg-type]
                )
                results["list"].append(
                    wrk(
                        servers["small"].url + "/orgs/listing/api_keys",
                        headers={"Authorization": f"Bearer {admin}"},
                        **run,  # type: ignore[arg-type]
                    )
                )
                print(f"round {round_number}: " + ", ".join(
                    f"{name} {r[-1].requests_per_second:,.0f} req/s p99 {r[-1].p99_ms:.2f} ms"
                    for name, r in results.items()
                ), flush=True)  # fmt: skip
        finally:
            for server in servers.values():
                server.stop()
    report(results, options)


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
    rows = [
        ("raw ASGI floor", "baseline"),
        ("GET /verify, 1,000 keys", "small"),
        (f"GET /verify, {options.stored:,} keys", "large"),
    ]
    for label, name in rows:
        print(f"{label:<30}{median[name]:>10,.0f} req/s  p99 {p99[name]:.2f} ms")
    # Ratios of adjacent runs in the same round are steadier on a shared machine than ratios of
    # medians; both are printed.
    verify_ratio = statistics.median(
        s.requests_per_second / b.requests_per_second
        for b, s in zip(results["baseline"], results["small"], strict=True)
    )
    size_ratio = statistics.median(
        big.requests_per_second / s.requests_per_second
        for s, big in zip(results["small"], results["large"], strict=True)
    )
    print(
        f"(1) verify / raw ASGI     {verify_ratio:.2f} median per round, "
        f"{median['small'] / median['baseline']:.2f} of medians  (goal >= 0.75)"
    )
    print(f"(1) verify p99            {p99['small']:.2f} ms  (goal < 5 ms)")
    print(
        f"(2) 1M keys / 1k keys     {size_ratio:.2f} median per round, "
        f"{median['large'] / median['small']:.2f} of medians  (goal >= 0.9)"
    )
    print(f"(5) list 100 keys         {median['list']:>10,.0f} req/s  p50 {p50['list']:.2f} ms")
    rounds = zip(results["baseline"], results["small"], results["large"], strict=True)
    for base, small, large in rounds:
        print(
            f"    per round: verify/raw {small.requests_per_second / base.requests_per_second:.2f}"
            f", 1M/1k {large.requests_per_second / small.requests_per_second:.2f}"
        )


if __name__ == "__main__":
    main()
