"""The thresholds file: its model, and an atomically swapped, hot-reloaded current value.

Example (deploy/thresholds.yaml)::

    version: "2026-11-25.1"        # optional; default: a hash of the file's content
    default: 0.9                   # drop a candidate whose max cosine is above this
    surfaces: {home: 0.85, search: 0.95}
    override_range: {min: 0.7, max: 0.99}   # bounds on a request's own threshold
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

Cosine = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]


class OverrideRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Cosine = -1.0
    max: Cosine = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> OverrideRange:
        if self.min > self.max:
            raise ValueError(f"override_range.min ({self.min}) exceeds max ({self.max})")
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(default="", max_length=64)
    default: Cosine
    surfaces: dict[str, Cosine] = Field(default_factory=dict)
    override_range: OverrideRange = OverrideRange()

    def for_surface(self, surface: str | None) -> float:
        """The surface's threshold; unknown or absent surfaces get the global default."""
        return self.surfaces.get(surface, self.default) if surface else self.default


BUILTIN = Thresholds(version="builtin", default=0.9)


class ThresholdsError(ValueError):
    """The thresholds file cannot be read or does not validate."""


def parse_thresholds(raw: bytes) -> Thresholds:
    try:
        data = yaml.safe_load(raw)
        if not isinstance(data, dict):
            raise ThresholdsError("the thresholds file must be a YAML mapping")
        thresholds = Thresholds.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ThresholdsError(str(exc)) from exc
    if not thresholds.version:
        thresholds = thresholds.model_copy(update={"version": hashlib.sha256(raw).hexdigest()[:12]})
    return thresholds


class ThresholdsSource:
    """Holds the current thresholds; ``refresh`` re-reads the file when its content changed.

    The current value is one immutable object replaced by a single assignment, so a request
    sees either the old or the new config, never a mix. A bad file keeps the last good one.
    """

    def __init__(
        self,
        path: Path | None,
        on_change: Callable[[Thresholds], None] = lambda _: None,
        on_error: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.path = path
        self.current: Thresholds | None = None if path else BUILTIN
        self.last_error: str | None = None
        self.loaded_at = time.time()
        self._digest: bytes | None = None
        self._on_change = on_change
        self._on_error = on_error
        if self.current is not None:
            on_change(self.current)
        self.refresh()

    def refresh(self) -> bool:
        """Reload if the file's content changed; True when a new config was applied."""
        if self.path is None:
            return False
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            message = f"cannot read {self.path}: {exc}"
            # Count an unreadable file once, not on every poll while it stays unreadable.
            return False if message == self.last_error else self._fail(message)
        digest = hashlib.sha256(raw).digest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            thresholds = parse_thresholds(raw)
        except ThresholdsError as exc:
            return self._fail(f"invalid thresholds file {self.path}: {exc}")
        self.current, self.last_error, self.loaded_at = thresholds, None, time.time()
        logger.info("thresholds config %s loaded from %s", thresholds.version, self.path)
        self._on_change(thresholds)
        return True

    def _fail(self, message: str) -> bool:
        logger.error("%s; keeping the last good config", message)
        self.last_error = message
        self._on_error(message)
        return False
