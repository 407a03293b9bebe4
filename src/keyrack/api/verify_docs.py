"""The OpenAPI description of `/verify`, which is served outside FastAPI (see api/verify.py)."""

from __future__ import annotations

from typing import Any

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_HEADERS = {
    "X-Keyrack-Org-Id": {"schema": {"type": "string"}, "description": "The key's organization"},
    "X-Keyrack-Key-Id": {"schema": {"type": "string"}, "description": "The key's public id"},
    "X-Keyrack-Permissions": {
        "schema": {"type": "string"},
        "description": "The key's permissions, comma separated",
    },
}
_VALID = {
    "type": "object",
    "properties": {
        "valid": {"type": "boolean", "const": True},
        "code": {"type": "string", "const": "VALID"},
        "org_id": {"type": "string"},
        "key_id": {"type": "string"},
        "name": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["valid", "code", "org_id", "key_id", "name", "permissions"],
}
_RESPONSES = {
    "200": {
        "description": "The key is valid and holds every requested permission",
        "headers": _HEADERS,
        "content": {"application/json": {"schema": _VALID}},
    },
    "401": {
        "description": "code MISSING, MALFORMED, NOT_FOUND, EXPIRED or DISABLED",
        "content": _PROBLEM,
    },
    "403": {"description": "code INSUFFICIENT_PERMISSIONS", "content": _PROBLEM},
}


def verify_path_item() -> dict[str, Any]:
    return {
        "get": {
            "tags": ["Verification"],
            "summary": "Verify a key (forward auth, e.g. nginx auth_request)",
            "parameters": [
                {
                    "name": "permission",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "array", "items": {"type": "string"}},
                    "style": "form",
                    "explode": True,
                    "description": "A permission the caller needs (repeatable)",
                }
            ],
            "responses": _RESPONSES,
        },
        "post": {
            "tags": ["Verification"],
            "summary": "Verify a key given in the body",
            "description": (
                "Verifies `key` from the body; without one, the key from `Authorization: Bearer`"
                " or `X-API-Key`. A body key is the subject of the request, not a credential for"
                " it: the headers are not read then, so the operation's authentication is optional."
            ),
            # `{}` makes it optional in OpenAPI terms: a body key needs no header key beside it.
            "security": [{}, {"bearer": []}, {"apiKeyHeader": []}],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "key": {
                                    "type": "string",
                                    "description": "The key to verify (else the header key)",
                                },
                                "permissions": {"type": "array", "items": {"type": "string"}},
                            },
                            "additionalProperties": False,
                        }
                    }
                }
            },
            "responses": {**_RESPONSES, "400": {"description": "Bad body", "content": _PROBLEM}},
        },
    }
