"""A real nginx in front of a tiny upstream, authenticating with the README's `auth_request`
block against a real keyrack process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ISSUED_SECRETS, new_org_admin
from tests.e2e.server import Server, free_port

README = Path(__file__).resolve().parents[2] / "README.md"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class EchoHeaders(BaseHTTPRequestHandler):
    """The upstream: answers with the keyrack headers nginx passed on."""

    def do_GET(self) -> None:
        body = json.dumps(
            {name: self.headers.get(name) for name in ("X-Keyrack-Org-Id", "X-Keyrack-Key-Id")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        return None


def readme_server_block(keyrack_port: int, app_port: int, listen_port: int) -> str:
    match = re.search(r"```nginx\n(.*?)```", README.read_text(), re.S)
    assert match, "the README has no nginx block"
    block = match.group(1)
    for old, new in (("8000", keyrack_port), ("9000", app_port), ("8080", listen_port)):
        assert f"127.0.0.1:{old}" in block
        block = block.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    # a second protected location needing `admin`, built the documented way
    admin_auth = re.search(r"location = /_keyrack/read \{.*?\n    \}", block, re.S)
    api = re.search(r"location /api/ \{.*?\n    \}", block, re.S)
    assert admin_auth and api
    extra = (
        admin_auth.group(0).replace("read", "admin")
        + "\n"
        + api.group(0).replace("/api/", "/admin/").replace("/_keyrack/read", "/_keyrack/admin")
    )
    return block.rstrip().removesuffix("}") + extra + "\n}\n"


@pytest.fixture(scope="module")
def nginx(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/system-deps.sh installs nginx-light)")
    tmp = tmp_path_factory.mktemp("nginx")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = tmp / "nginx.conf"
    config.write_text(
        f"worker_processes 1;\ndaemon off;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} warn;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n    access_log off;\n{temp_paths}\n"
        + readme_server_block(server.port, upstream.server_address[1], port)
        + "}\n"
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                httpx.get(url + "/api/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        upstream.shutdown()


def test_nginx_auth_request(server: Server, nginx: str) -> None:
    admin = new_org_admin(server)
    reader = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys", json={"name": "reader", "permissions": ["read"]}
    ).json()
    ISSUED_SECRETS.append(reader["key"])
    with httpx.Client(base_url=nginx, timeout=10) as client:
        passed = client.get("/api/x", headers={"Authorization": f"Bearer {reader['key']}"})
        assert passed.status_code == 200
        assert passed.json() == {"X-Keyrack-Org-Id": admin.org_id, "X-Keyrack-Key-Id": reader["id"]}
        spoofed = client.get(
            "/api/x", headers={"X-API-Key": reader["key"], "X-Keyrack-Org-Id": "someone-else"}
        )
        assert spoofed.json()["X-Keyrack-Org-Id"] == admin.org_id
        posted = client.post("/api/x", headers={"X-API-Key": reader["key"]}, content=b"{}")
        assert posted.status_code == 200  # a POST's subrequest is still a GET /verify
        assert client.get("/api/x").status_code == 401
        assert client.get("/api/x", headers={"X-API-Key": "kr_invalid"}).status_code == 401
        assert client.get("/admin/x", headers={"X-API-Key": reader["key"]}).status_code == 403
        assert client.get("/admin/x", headers={"X-API-Key": admin.key}).status_code == 200
        deleted = admin.client.delete(f"/orgs/{admin.org_id}/api_keys/{reader['id']}")
        assert deleted.status_code == 200
        assert client.get("/api/x", headers={"X-API-Key": reader["key"]}).status_code == 401


def test_nginx_passes_on_usage_limits_as_429(server: Server, nginx: str) -> None:
    admin = new_org_admin(server)
    limited = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys",
        json={
            "name": "limited",
            "permissions": ["read"],
            "rate_limit": {"limit": 1, "window_seconds": 60},
            "quota": None,
        },
    ).json()
    used_up = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys",
        json={"name": "quota", "permissions": ["read"], "quota": {"limit": 1, "period": "day"}},
    ).json()
    ISSUED_SECRETS.extend([limited["key"], used_up["key"]])
    with httpx.Client(base_url=nginx, timeout=10) as client:
        assert client.get("/api/x", headers={"X-API-Key": limited["key"]}).status_code == 200
        refused = client.get("/api/x", headers={"X-API-Key": limited["key"]})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == {
            "title": "Too Many Requests",
            "status": 429,
            "code": "RATE_LIMITED",
        }
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-policy"] == '"rate";q=1;w=60'
        assert refused.headers["ratelimit"].startswith('"rate";r=0;t=')
        assert client.get("/api/x", headers={"X-API-Key": used_up["key"]}).status_code == 200
        exceeded = client.get("/api/x", headers={"X-API-Key": used_up["key"]})
        assert exceeded.status_code == 429 and exceeded.json()["code"] == "USAGE_EXCEEDED"
        assert int(exceeded.headers["retry-after"]) >= 1
        # Not a limit: the app's own answers and keyrack's 401 pass unchanged.
        assert client.get("/api/x", headers={"X-API-Key": "kr_invalid"}).status_code == 401
