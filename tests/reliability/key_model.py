"""An in-memory model of an organization's keys: what the API and /verify must answer.

Times are POSIX seconds. The state machine keeps every instant it compares far (hundreds of
seconds) from any boundary, so the model needs no tolerance and never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERMISSIONS = ("read", "write", "admin")


@dataclass
class ModelSecret:
    value: str
    grace_until: float | None = None  # set when a rotation replaced it: the end of its grace


@dataclass
class ModelKey:
    id: str
    name: str
    permissions: tuple[str, ...]
    expires_at: float | None
    enabled: bool = True
    secrets: list[ModelSecret] = field(default_factory=list)

    def as_api(self) -> dict[str, object]:
        """The fields of the API's key object the model decides (not created_at, last_used_at)."""
        return {
            "id": self.id,
            "name": self.name,
            "permissions": list(self.permissions),
            "expires_at": self.expires_at,
            "enabled": self.enabled,
            "rate_limit": None,
            "quota": None,
        }


@dataclass
class KeyModel:
    keys: dict[str, ModelKey] = field(default_factory=dict)
    # Secrets that must never authenticate again: of deleted keys, or replaced without grace.
    dead_secrets: list[str] = field(default_factory=list)

    def create(self, key: ModelKey) -> None:
        self.keys[key.id] = key

    def delete(self, key_id: str) -> None:
        key = self.keys.pop(key_id)
        self.dead_secrets.extend(secret.value for secret in key.secrets)

    def rotate(self, key_id: str, new_secret: str, *, grace_seconds: int, now: float) -> None:
        """As the repository does: without grace the old secrets go at once; with grace, those
        already past theirs go, the others end at `now + grace` (or earlier, if already so)."""
        key = self.keys[key_id]
        kept = []
        for secret in key.secrets:
            gone = grace_seconds == 0 or (
                secret.grace_until is not None and secret.grace_until <= now
            )
            if gone:
                self.dead_secrets.append(secret.value)
                continue
            end = now + grace_seconds
            if secret.grace_until is None or secret.grace_until > end:
                secret.grace_until = end
            kept.append(secret)
        key.secrets = [*kept, ModelSecret(new_secret)]

    def secrets(self) -> list[str]:
        return [secret.value for key in self.keys.values() for secret in key.secrets]

    def verify(self, secret: str, needed: tuple[str, ...], *, now: float) -> str:
        """The verification code, in the Verifier's order: found, expired, disabled, permitted."""
        for key in self.keys.values():
            for held in key.secrets:
                if held.value != secret:
                    continue
                if (held.grace_until is not None and held.grace_until <= now) or (
                    key.expires_at is not None and key.expires_at <= now
                ):
                    return "EXPIRED"
                if not key.enabled:
                    return "DISABLED"
                if any(permission not in key.permissions for permission in needed):
                    return "INSUFFICIENT_PERMISSIONS"
                return "VALID"
        return "NOT_FOUND"
