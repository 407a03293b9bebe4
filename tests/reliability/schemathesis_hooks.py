"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): a fresh admin key for each test case.

The fuzzer may delete any key it can list, the one it authenticates with included, which would
turn the rest of the run into 401s; minting a key per case in the server's own database (same
KEYRACK_* settings) keeps every case authenticated without weakening the API.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import schemathesis

from keyrack.domain.policy import OrgPolicy
from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings

ORG_VARIABLE = "KEYRACK_ST_ORG_ID"
# Where the minted secrets are listed, one a line, for the test run's secrets scan.
SECRETS_FILE_VARIABLE = "KEYRACK_ST_SECRETS_FILE"


@cache
def runtime() -> Runtime:
    return build_runtime(Settings())


@schemathesis.auth(refresh_interval=None)
class FreshAdminKey:
    def get(self, case: Any, context: Any) -> str:
        org_id = os.environ[ORG_VARIABLE]
        # The fuzzer may have PUT a policy that forbids admin keys or caps active keys; each case
        # starts from the default policy so that minting its key is always allowed.
        with runtime().uow(write=True) as uow:
            uow.repo.set_policy(org_id, OrgPolicy())
            uow.commit()
        created = key_service.create_key(
            uow=runtime().uow(write=True),
            key_format=runtime().key_format,
            hasher=runtime().hasher,
            org_id=org_id,
            name="schemathesis",
            permissions=["read", "write", "admin"],
        )
        with open(os.environ[SECRETS_FILE_VARIABLE], "a") as issued:
            issued.write(created.secret + "\n")
        return created.secret

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
