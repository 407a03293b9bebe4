"""All configuration, read once from `KEYRACK_*` environment variables and passed in."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    cache_max_entries: int = Field(default=100_000, ge=1, description="verification cache size")
    cache_ttl_seconds: float = Field(
        default=300.0, gt=0, description="safety net only: revocations are pushed, not awaited"
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
