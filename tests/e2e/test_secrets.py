"""No secret issued during a run is ever written to the database, the log or an error body."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx

from tests.e2e.server import start_server


def test_no_secret_in_database_files_logs_or_errors(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="scan")
    try:
        bootstrap = server.bootstrap_key()
        secrets = [bootstrap]
        seen_bodies: list[str] = []
        with server.client(bootstrap) as client:
            created = []
            for index in range(5):
                response = client.post(
                    "/orgs/default/api_keys",
                    json={"name": f"scan {index}", "permissions": ["read", "write"]},
                    headers={"Idempotency-Key": f"scan-{index}"},  # its stored response too
                )
                assert response.status_code == 200
                created.append(response.json())
                secrets.append(response.json()["key"])
            seen_bodies.append(client.get("/orgs/default/api_keys").text)
            for item in created[:3]:
                seen_bodies.append(client.delete(f"/orgs/default/api_keys/{item['id']}").text)
            # misuse a client could make: keys in query strings, odd headers, bad bodies
            for secret in secrets:
                seen_bodies.append(
                    httpx.get(server.url + f"/orgs/default/api_keys?api_key={secret}").text
                )
                seen_bodies.append(
                    httpx.get(
                        server.url + "/orgs/default/api_keys", headers={"Authorization": secret}
                    ).text
                )
                seen_bodies.append(
                    httpx.get(
                        server.url + "/orgs/other/api_keys", headers={"X-API-Key": secret + "x"}
                    ).text
                )
                seen_bodies.append(
                    client.post(
                        "/orgs/default/api_keys", json={"name": secret, "permissions": ["x"]}
                    ).text
                )
        server.stop()  # flush everything to disk before scanning
        files = [
            path for path in server.data_dir.rglob("*") if path.is_file() and path.name != "pepper"
        ]
        assert any(path.name == "keyrack.db" for path in files)
        blobs = {str(path): path.read_bytes() for path in files}
        blobs["log"] = server.log_path.read_bytes()
        pepper = (server.data_dir / "pepper").read_text().strip().encode()
        bootstrap_hash = hmac.new(pepper, bootstrap.encode(), hashlib.sha256).hexdigest()
        for secret in secrets:
            for where, blob in blobs.items():
                assert secret.encode() not in blob, f"a secret leaked into {where}"
        # the bootstrap key goes to the terminal (stdout) exactly once, never to the log (stderr)
        assert server.stdout().count(bootstrap) == 2  # the line itself and the export example
        for body in seen_bodies:
            for secret in secrets:
                assert secret not in body
            assert bootstrap_hash not in body
        assert bootstrap_hash.encode() not in blobs["log"]
    finally:
        server.stop()
