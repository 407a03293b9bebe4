"""Revocation propagation (4): two keyrack processes on one database; the time from the DELETE's
response on the first to the second's first 401, p50 and p99 (polling the second every ~1 ms).

    .venv/bin/python bench/bench_revocation.py [--samples 100] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from common import issue_keys, keyrack_env, percentile, runtime_for, serve
from keyrack.service import keys as key_service


def measure(database_url: str, directory: Path, samples: int) -> list[float]:
    runtime = runtime_for(database_url, directory)
    org_id = f"bench-revocation-{int(time.time())}"
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    (admin,) = issue_keys(runtime, org_id, 1, ["read", "write", "admin"])
    env = keyrack_env(database_url, directory)
    factory = "keyrack.api.app:create_app_from_env"
    handling, other = serve(factory, factory=True, env=env), serve(factory, factory=True, env=env)
    delays: list[float] = []
    try:
        with httpx.Client(timeout=5) as client:
            for _ in range(samples):
                created = client.post(
                    f"{handling.url}/orgs/{org_id}/api_keys",
                    headers={"Authorization": f"Bearer {admin}"},
                    json={"name": "victim", "permissions": ["read"]},
                ).json()
                headers = {"X-API-Key": created["key"]}
                assert client.get(other.url + "/verify", headers=headers).status_code == 200
                deleted = client.delete(
                    f"{handling.url}/orgs/{org_id}/api_keys/{created['id']}",
                    headers={"Authorization": f"Bearer {admin}"},
                )
                answered = time.perf_counter()
                assert deleted.status_code == 200
                deadline = answered + 5
                while client.get(other.url + "/verify", headers=headers).status_code != 401:
                    assert time.perf_counter() < deadline, "not revoked within 5 s"
                    time.sleep(0.001)
                delays.append((time.perf_counter() - answered) * 1000)
    finally:
        handling.stop()
        other.stop()
        runtime.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL database")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        targets = {"SQLite (shared file)": f"sqlite:///{Path(tmp, 'keyrack.db')}"}
        if options.postgres:
            targets["PostgreSQL (LISTEN/NOTIFY)"] = options.postgres
        for label, url in targets.items():
            delays = measure(url, Path(tmp), options.samples)
            print(
                f"(4) {label}: DELETE answered -> other instance's first 401: "
                f"p50 {statistics.median(delays):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms, "
                f"max {max(delays):.1f} ms over {len(delays)} deletions"
            )


if __name__ == "__main__":
    main()
