"""All configuration, read once from `KEYRACK_*` environment variables and passed in."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_PEPPER_LENGTH = 32


class InsecureConfiguration(Exception):
    """Raised at start-up when production settings would be unsafe."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYRACK_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite in the data directory"
    )
    pepper: SecretStr | None = Field(
        default=None, description="HMAC key for stored secrets; default: a file in the data dir"
    )
    key_prefix: str = "kr"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Usage limits (rate limits, quotas, failed-authentication throttling).
    redis_url: str | None = Field(
        default=None, description="Redis shared by all instances; default: in-process counters"
    )
    limits_failure_mode: Literal["open", "closed"] = Field(
        default="open", description="Redis unreachable: admit unchecked (open) or answer 503"
    )
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    auth_failure_limit: int = Field(
        default=100, ge=1, le=100_000, description="failed authentications per address..."
    )
    auth_failure_window_seconds: int = Field(default=60, ge=1, le=86_400, description="...per")
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="comma-separated CIDRs whose X-Forwarded-For is believed",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    cache_max_entries: int = Field(default=100_000, ge=1, description="verification cache size")
    cache_ttl_seconds: float = Field(
        default=300.0, gt=0, description="safety net only: revocations are pushed, not awaited"
    )
    metrics: bool = Field(
        default=True, description="record Prometheus metrics (false: /metrics stays at zero)"
    )
    verify_refusal_log_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="/verify logs each refusal code at most this often"
    )
    last_used_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="how often last_used_at stamps are written"
    )

    @model_validator(mode="after")
    def _enforce_production_safety(self) -> Settings:
        if self.env != "production":
            return self
        if self.pepper is None or len(self.pepper.get_secret_value()) < MIN_PEPPER_LENGTH:
            raise InsecureConfiguration(
                f"KEYRACK_PEPPER must be at least {MIN_PEPPER_LENGTH} characters in production"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'keyrack.db').resolve()}"

    def load_pepper(self) -> bytes:
        """The configured pepper, or the one in `<data_dir>/pepper`, created once with mode 0600."""
        if self.pepper is not None:
            value = self.pepper.get_secret_value()
            if len(value) < MIN_PEPPER_LENGTH:
                raise InsecureConfiguration(
                    f"KEYRACK_PEPPER must be at least {MIN_PEPPER_LENGTH} characters"
                )
            return value.encode("utf-8")
        path = self.data_dir / "pepper"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            value = path.read_text().strip()
            if len(value) < MIN_PEPPER_LENGTH:
                raise InsecureConfiguration(f"the pepper file {path} is too short") from None
            return value.encode("utf-8")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return path.read_text().strip().encode("utf-8")
