"""A real nginx load balancer on loopback, round-robin over keyrack nodes; config in tmp."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.e2e.server import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
# Which node answered: nginx names the upstream it used in this header.
UPSTREAM_HEADER = "X-Upstream"


def nginx_config(tmp: Path, listen_port: int, upstream_ports: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{port};" for port in upstream_ports)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
daemon off;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp_paths}
    upstream keyrack {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://keyrack;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            add_header {UPSTREAM_HEADER} $upstream_addr always;
        }}
    }}
}}
"""


class LoadBalancer:
    """nginx in front of `upstream_ports`; stopped (SIGTERM, then waited for) on exit."""

    def __init__(self, tmp: Path, upstream_ports: list[int]) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (scripts/system-deps.sh installs it)")
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tmp.mkdir(parents=True, exist_ok=True)
        config = tmp / "nginx.conf"
        config.write_text(nginx_config(tmp, self.port, upstream_ports))
        self.process = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def __enter__(self) -> LoadBalancer:
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"nginx exited: {stderr}")
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start within 10 s") from None
                time.sleep(0.05)

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
