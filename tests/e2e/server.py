"""Starting real `keyrack serve` processes for end-to-end tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.secrets_registry import REGISTRY

KEY_PATTERN = re.compile(r"\b(kr_[0-9A-Za-z]{38})\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path  # stderr: the server's log
    stdout_path: Path  # stdout: what the terminal shows (the bootstrap key, once)
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def bootstrap_key(self) -> str:
        match = KEY_PATTERN.search(self.stdout())
        assert match, "the server printed no bootstrap key"
        REGISTRY.add(match.group(1))
        return match.group(1)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=10,
            event_hooks={"response": [REGISTRY.record_response]},
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def keyrack_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "keyrack.cli", *args]


def start_server(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    name: str = "server",
    port: int | None = None,
    timeout: float = 30.0,
) -> Server:
    """Start `keyrack serve` on a free loopback port and wait until it answers."""
    port = port or free_port()
    data_dir = tmp_path / f"{name}-data"
    log_path = tmp_path / f"{name}.log"
    stdout_path = tmp_path / f"{name}.stdout"
    full_env = {
        **os.environ,
        "KEYRACK_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with log_path.open("wb") as log, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(
            keyrack_command("serve", "--host", "127.0.0.1", "--port", str(port), *args),
            stdout=stdout,
            stderr=log,
            env=full_env,
        )
    server = Server(
        process=process,
        port=port,
        log_path=log_path,
        stdout_path=stdout_path,
        data_dir=data_dir,
        env=full_env,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"keyrack serve exited with {process.returncode}:\n{server.stdout()}{server.log()}"
            )
        try:
            httpx.get(server.url + "/openapi.json", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"keyrack serve did not answer within {timeout}s:\n{server.log()}")
