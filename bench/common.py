"""Benchmark helpers: uvicorn servers with identical settings, wrk runs, bulk key seeding."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from keyrack.api.http_protocol import PROTOCOL_PATH
from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PEPPER = "bench-pepper-" + "x" * 40
UVICORN_SETTINGS = [
    "--host", "127.0.0.1", "--workers", "1", "--loop", "uvloop",
    "--no-access-log", "--log-level", "warning",
]  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system), from /proc (Linux)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def serve(
    target: str,
    *,
    factory: bool,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    http: str = PROTOCOL_PATH,
) -> Served:
    """One uvicorn worker on loopback, the same settings for keyrack and the baseline: by default
    keyrack's HTTP protocol (as `keyrack serve` runs), `http="httptools"` for uvicorn's own."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", target, *UVICORN_SETTINGS, "--http", http, *args,
        "--port", str(port),
    ]  # fmt: skip
    if factory:
        command.append("--factory")
    process = subprocess.Popen(
        command, cwd=ROOT / "bench", env={**os.environ, **(env or {})}, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/verify", timeout=1)
            time.sleep(0.5)  # let the key change feed connect (until then the cache is bypassed)
            return Served(process, url)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{target} did not start")


def keyrack_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "KEYRACK_DATABASE_URL": database_url,
        "KEYRACK_PEPPER": PEPPER,
        "KEYRACK_DATA_DIR": str(data_dir),
    }


def runtime_for(database_url: str, data_dir: Path) -> Runtime:
    return build_runtime(Settings(database_url=database_url, pepper=PEPPER, data_dir=data_dir))


def issue_keys(runtime: Runtime, org_id: str, count: int, permissions: list[str]) -> list[str]:
    return [
        key_service.create_key(
            uow=runtime.uow(write=True),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            org_id=org_id,
            name=f"bench {index}",
            permissions=permissions,
        ).secret
        for index in range(count)
    ]


def bulk_fill(database_path: str, org_id: str, count: int) -> None:
    """`count` filler keys with random hashes, straight into SQLite (nobody can use them)."""
    connection = sqlite3.connect(database_path)
    stamp = "2026-01-01 00:00:00.000000"
    batch = 50_000
    with connection:
        for start in range(0, count, batch):
            ids = [f"key-fill{start + i:012d}" for i in range(min(batch, count - start))]
            connection.executemany(
                "INSERT INTO api_keys (id, org_id, name, permissions, start, created_at, enabled)"
                " VALUES (?, ?, 'filler', 'read', 'kr_fill', ?, 1)",
                [(key_id, org_id, stamp) for key_id in ids],
            )
            connection.executemany(
                "INSERT INTO key_secrets (secret_hash, key_id, created_at) VALUES (?, ?, ?)",
                [(secrets.token_bytes(32), key_id, stamp) for key_id in ids],
            )
    connection.close()


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int = 0
    server_cpu_us: float | None = None  # the server's CPU time per request, when measured


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    connections: int = 32,
    seconds: int = 10,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> WrkResult:
    ensure_wrk()
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, int(errors.group(1)) if errors else 0, requests)


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "system-deps.sh")], check=True)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")


def key_rotation_script(path: Path, keys: list[str]) -> Path:
    """A wrk script sending each request with the next of `keys` (all cached after one round).
    The requests are formatted once, in `init`: formatting one per request costs wrk more CPU
    than keyrack's whole answer, and that CPU is taken from the server measured."""
    listed = ",".join(f'"{key}"' for key in keys)
    path.write_text(
        f"local keys = {{{listed}}}\nlocal requests = {{}}\nlocal i = 0\n"
        "init = function(args)\n  for n, key in ipairs(keys) do\n"
        '    requests[n] = wrk.format("GET", "/verify", {["X-API-Key"] = key})\n  end\nend\n'
        "request = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n"
    )
    return path


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
