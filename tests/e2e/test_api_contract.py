"""The seed's contract and every documented status code, against a real server process."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin, new_org_admin
from tests.e2e.server import Server

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
KEY_FIELDS = {
    "id",
    "name",
    "created_at",
    "permissions",
    "start",
    "expires_at",
    "last_used_at",
    "enabled",
    "rate_limit",
    "quota",
}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def create(
    admin: OrgAdmin, name: str = "New API Key", permissions: list[str] | None = None
) -> dict:  # type: ignore[type-arg]
    response = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys",
        json={"name": name, "permissions": permissions or ["read", "write"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    ISSUED_SECRETS.append(body["key"])
    return body  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    if code:
        assert body["code"] == code
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


def test_create_returns_seed_fields_plus_secret(admin: OrgAdmin) -> None:
    body = create(admin)
    assert set(body) == KEY_FIELDS | {"key"}
    assert body["name"] == "New API Key"
    assert body["permissions"] == ["read", "write"]
    assert TIMESTAMP.match(body["created_at"])
    assert re.match(r"^key-[A-Za-z0-9]{16,}$", body["id"])
    assert body["key"].startswith(body["start"]) and len(body["start"]) < 12


def test_list_is_a_bare_array_without_secrets(admin: OrgAdmin) -> None:
    created = create(admin)
    response = admin.client.get(f"/orgs/{admin.org_id}/api_keys")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    listed = response.json()
    assert isinstance(listed, list)
    mine = next(item for item in listed if item["id"] == created["id"])
    assert mine == {key: created[key] for key in KEY_FIELDS}
    assert created["key"] not in response.text
    assert admin.key not in response.text


def test_delete_revokes_before_answering(server: Server, admin: OrgAdmin) -> None:
    created = create(admin, permissions=["read", "write"])
    other = server.client(created["key"])
    assert_problem(other.get(f"/orgs/{admin.org_id}/api_keys"), 403)  # authenticates, not admin
    response = admin.client.delete(f"/orgs/{admin.org_id}/api_keys/{created['id']}")
    assert response.status_code == 200
    assert response.json() == {"message": "API key deleted successfully"}
    assert_problem(other.get(f"/orgs/{admin.org_id}/api_keys"), 401, "NOT_FOUND")
    assert_problem(admin.client.delete(f"/orgs/{admin.org_id}/api_keys/{created['id']}"), 404)


def test_missing_and_invalid_keys_get_401_with_challenge(server: Server, admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    missing = httpx.get(server.url + path)
    assert_problem(missing, 401, "MISSING")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for headers, code in [
        ({"Authorization": "Bearer kr_nope"}, "MALFORMED"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "MALFORMED"),
        ({"X-API-Key": "kr_" + "a" * 38}, "MALFORMED"),
        (
            {"Authorization": "Bearer " + admin.key[:-1] + ("A" if admin.key[-1] != "A" else "B")},
            "MALFORMED",
        ),
    ]:
        response = httpx.get(server.url + path, headers=headers)
        body = assert_problem(response, 401, code)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert headers.get("Authorization", headers.get("X-API-Key", "")) not in str(body)


def test_x_api_key_header_works_and_query_string_never_does(
    server: Server, admin: OrgAdmin
) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    assert httpx.get(server.url + path, headers={"X-API-Key": admin.key}).status_code == 200
    for name in ("api_key", "key", "apikey", "access_token"):
        assert_problem(httpx.get(server.url + path, params={name: admin.key}), 401, "MISSING")


def test_other_orgs_look_like_missing_ones(server: Server, admin: OrgAdmin) -> None:
    other = new_org_admin(server)
    their_key = create(other)
    unknown = admin.client.get("/orgs/no-such-org-xyz/api_keys")
    foreign = admin.client.get(f"/orgs/{other.org_id}/api_keys")
    assert_problem(unknown, 404)
    assert_problem(foreign, 404)
    assert unknown.json()["code"] == foreign.json()["code"]
    missing_key = admin.client.delete(f"/orgs/{admin.org_id}/api_keys/key-doesnotexist123456")
    foreign_key = admin.client.delete(f"/orgs/{admin.org_id}/api_keys/{their_key['id']}")
    assert_problem(missing_key, 404)
    assert_problem(foreign_key, 404)
    assert missing_key.json()["code"] == foreign_key.json()["code"]
    assert_problem(admin.client.delete(f"/orgs/{other.org_id}/api_keys/{their_key['id']}"), 404)
    still = other.client.get(f"/orgs/{other.org_id}/api_keys").json()
    assert their_key["id"] in [item["id"] for item in still]


def test_permission_rules_give_403(server: Server, admin: OrgAdmin) -> None:
    reader = server.client(create(admin, permissions=["read"])["key"])
    assert_problem(reader.get(f"/orgs/{admin.org_id}/api_keys"), 403, "INSUFFICIENT_PERMISSIONS")
    limited = new_org_admin(server, permissions=("read", "admin"))
    response = limited.client.post(
        f"/orgs/{limited.org_id}/api_keys", json={"name": "x", "permissions": ["write"]}
    )
    assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert "write" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"permissions": ["read"]}, "name"),
        ({"name": "x"}, "permissions"),
        ({"name": "", "permissions": ["read"]}, "name"),
        ({"name": "   ", "permissions": ["read"]}, "name"),
        ({"name": "a" * 129, "permissions": ["read"]}, "name"),
        ({"name": "bad\u0007name", "permissions": ["read"]}, "name"),
        ({"name": 5, "permissions": ["read"]}, "name"),
        ({"name": "x", "permissions": []}, "permissions"),
        ({"name": "x", "permissions": ["read", "read"]}, "permissions"),
        ({"name": "x", "permissions": ["root"]}, "permissions"),
        ({"name": "x", "permissions": "read"}, "permissions"),
        ({"name": "x", "permissions": ["read"], "id": "key-mine"}, "id"),
        ({"name": "x", "permissions": ["read"], "org_id": "other"}, "org_id"),
        (
            {"name": "x", "permissions": ["read"], "created_at": "2020-01-01T00:00:00Z"},
            "created_at",
        ),
        ({"name": "x", "permissions": ["read"], "key": "kr_chosen"}, "key"),
    ],
)
def test_invalid_input_is_400_naming_the_field(admin: OrgAdmin, body: dict, field: str) -> None:  # type: ignore[type-arg]
    response = admin.client.post(f"/orgs/{admin.org_id}/api_keys", json=body)
    problem = assert_problem(response, 400)
    assert field in problem["detail"]
    assert field in [error["field"] for error in problem["errors"]]


def test_malformed_json_and_path_values_are_400(admin: OrgAdmin) -> None:
    response = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys",
        content=b'{"name": "x", "permissions": ["read"',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400, "MALFORMED_JSON")
    response = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys",
        content=b'["a"]',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400)
    assert_problem(admin.client.delete(f"/orgs/{admin.org_id}/api_keys/not-a-key-id"), 400)
    assert_problem(admin.client.get("/orgs/bad%20org!/api_keys"), 400)


def test_media_type_size_and_method_errors(admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    response = admin.client.post(path, content=b"name=x", headers={"content-type": "text/plain"})
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    big = {"name": "x", "permissions": ["read"], "pad": "a" * (65 * 1024)}
    assert_problem(admin.client.post(path, json=big), 413, "CONTENT_TOO_LARGE")
    response = admin.client.put(path, json={})
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
    response = admin.client.put(path + "/key-abc")
    assert_problem(response, 405)
    assert {"DELETE", "GET", "PATCH"} <= {m.strip() for m in response.headers["allow"].split(",")}
    assert_problem(admin.client.get("/no/such/route"), 404)


def test_checks_run_in_order_auth_scope_permission_input(server: Server, admin: OrgAdmin) -> None:
    bad_body = {"name": "", "permissions": ["nope"], "extra": 1}
    # 1. authentication before anything, even a malformed body or a foreign org
    response = httpx.post(server.url + "/orgs/elsewhere/api_keys", content=b"{not json")
    assert_problem(response, 401)
    # 2. org scope before permission and input
    reader = server.client(create(admin, permissions=["read"])["key"])
    assert_problem(reader.post("/orgs/elsewhere-org/api_keys", json=bad_body), 404)
    # 3. permission before input
    assert_problem(reader.post(f"/orgs/{admin.org_id}/api_keys", json=bad_body), 403)
    # 4. input last
    assert_problem(admin.client.post(f"/orgs/{admin.org_id}/api_keys", json=bad_body), 400)


def test_openapi_documents_the_seed_paths_and_no_fastapi_422(server: Server) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/orgs/{org_id}/api_keys"]) >= {"get", "post"}
    assert "delete" in paths["/orgs/{org_id}/api_keys/{key_id}"]
    params = {p["name"] for p in paths["/orgs/{org_id}/api_keys/{key_id}"]["delete"]["parameters"]}
    assert params == {"org_id", "key_id"}
    for item in paths.values():
        for operation in item.values():
            unprocessable = operation.get("responses", {}).get("422")
            assert unprocessable is None or "Problem" in str(unprocessable)  # never FastAPI's
    assert "HTTPValidationError" not in str(schema)
    # Every operation needs a key, except POST /verify, whose key may come in the body.
    assert schema["security"] == [{"bearer": []}, {"apiKeyHeader": []}]
    assert "security" not in paths["/verify"]["get"]
    assert {} in paths["/verify"]["post"]["security"]
