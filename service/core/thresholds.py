"""The thresholds file: its model, and an atomically swapped, hot-reloaded current value.

Example (deploy/thresholds.yaml)::

    version: "2026-11-25.1"        # optional; default: a hash of the file's content
    default: 0.9                   # drop a candidate whose max cosine is above this
    mode: enforce                  # optional; enforce (drop) or shadow (score, count, keep all)
    max_drop_share: 0.5            # optional; at most this share of a request's candidates
    holdout: 0.05                  # optional; share of users scored but never filtered
    log_sample: 0.01               # optional; share of users whose decisions are logged
    surfaces:
      home: 0.85                   # short form: the threshold, the rest from the top level
      search: {threshold: 0.95, mode: shadow, holdout: 0.1}   # long form; any key left out
    override_range: {min: 0.7, max: 0.99}   # bounds on a request's own threshold

A request naming a surface the file does not list, or none, gets the top-level policy and is
counted in the metrics under the surface label ``other`` (a reserved name). Without a file the
service runs in shadow mode everywhere: a threshold that was not chosen from data drops nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

logger = logging.getLogger(__name__)

Cosine = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Mode = Literal["enforce", "shadow"]
MODES: tuple[Mode, ...] = ("enforce", "shadow")
# max_cosine: the paper's rule, a cosine in [-1, 1]; calibrated: P(dislike) in [0, 1] from the
# calibration artifact (`conrec.codebook.calibration`).
Score = Literal["max_cosine", "calibrated"]
SCORES: tuple[Score, ...] = ("max_cosine", "calibrated")
# The metrics label of every request whose surface is not configured (or absent).
OTHER = "other"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _surface_name(name: str) -> str:
    # Names become metric label values: plain ones, no longer than a request may send.
    if not _NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a surface name (letters, digits, '_', '.', '-')")
    if name.lower() == OTHER:
        raise ValueError(f"'{name}' is reserved: it labels the metrics of unlisted surfaces")
    return name


SurfaceName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_surface_name)]


class OverrideRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Cosine = -1.0
    max: Cosine = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> OverrideRange:
        if self.min > self.max:
            raise ValueError(f"override_range.min ({self.min}) exceeds max ({self.max})")
        return self


class Surface(BaseModel):
    """A surface's policy, resolved: what it left out of the long form is the file's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: Cosine
    mode: Mode = "enforce"
    score: Score = "max_cosine"
    # At most this share of one request's candidates is dropped (highest scores first), so that
    # a ranking service never receives an empty page.
    max_drop_share: Share = 1.0
    # This share of users (a stable hash of the id) is scored as in shadow and never filtered:
    # their later feedback on what would have been dropped measures the filter in production.
    holdout: Share = 0.0
    # This share of users (another hash) has every decision written to the decision log.
    log_sample: Share = 0.0

    @model_validator(mode="after")
    def _probability(self) -> Surface:
        if self.score == "calibrated" and self.threshold < 0:
            raise ValueError(
                f"threshold {self.threshold}: a calibrated score's threshold is a probability"
            )
        return self


# The policy keys a surface inherits from the top level of the file.
POLICY_KEYS = ("mode", "score", "max_drop_share", "holdout", "log_sample")


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(default="", max_length=64)
    default: Cosine
    mode: Mode = "enforce"
    score: Score = "max_cosine"
    max_drop_share: Share = 1.0
    holdout: Share = 0.0
    log_sample: Share = 0.0
    # Bounded: each surface is a set of metric series.
    surfaces: dict[SurfaceName, Surface] = Field(default_factory=dict, max_length=256)
    override_range: OverrideRange = OverrideRange()
    # Bounds on a request's own threshold on a surface with the calibrated score.
    calibrated_override_range: OverrideRange = OverrideRange(min=0.0, max=1.0)

    def bounds(self, score: Score) -> OverrideRange:
        """Where a request's own threshold must lie for a surface with this score."""
        return self.calibrated_override_range if score == "calibrated" else self.override_range

    @model_validator(mode="before")
    @classmethod
    def _resolve_surfaces(cls, data: Any) -> Any:
        """Both forms to one: ``home: 0.85`` and ``home: {mode: shadow}`` become a full
        ``Surface`` (what they leave out taken from ``default`` and ``mode``), so that a request
        looks up one object and the file's parser is the only place that knows the forms."""
        if not isinstance(data, dict) or not isinstance(data.get("surfaces"), dict):
            return data
        fallback = {key: data[key] for key in POLICY_KEYS if key in data}
        if "default" in data:  # else a surface without one: "threshold: Field required"
            fallback["threshold"] = data["default"]
        surfaces = {
            name: {**fallback, **entry}
            if isinstance(entry, dict)
            else {**fallback, "threshold": entry}
            for name, entry in data["surfaces"].items()
        }
        return {**data, "surfaces": surfaces}

    @model_validator(mode="after")
    def _defaults_valid(self) -> Thresholds:
        # The top level is the policy of unlisted surfaces: it must hold as a surface does.
        _ = self.fallback
        return self

    @cached_property
    def fallback(self) -> Surface:
        """The policy of unlisted and absent surfaces."""
        return Surface(threshold=self.default, **{key: getattr(self, key) for key in POLICY_KEYS})

    def policy(self, surface: str | None) -> tuple[str, Surface]:
        """The metrics label and the policy of a request's surface: a listed surface's own,
        else ``other`` and the defaults (an unknown name is counted, never refused)."""
        found = self.surfaces.get(surface)  # None: never a key
        return (surface, found) if found is not None else (OTHER, self.fallback)


# Without a thresholds file nothing was chosen from data: score and count, drop nothing.
BUILTIN = Thresholds(version="builtin", default=0.9, mode="shadow")


class ThresholdsError(ValueError):
    """The thresholds file cannot be read or does not validate."""


def parse_thresholds(raw: bytes) -> Thresholds:
    """The file's config; ThresholdsError says in one line what is wrong, field by field."""
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ThresholdsError("the thresholds file must be a YAML mapping")
    try:
        thresholds = Thresholds.model_validate(data)
    except ValidationError as exc:
        raise ThresholdsError(_describe(exc)) from exc
    if not thresholds.version:
        thresholds = thresholds.model_copy(update={"version": hashlib.sha256(raw).hexdigest()[:12]})
    return thresholds


def _describe(exc: ValidationError) -> str:
    # pydantic's own text spans several lines per error with links; logs, /readyz and
    # `conrec thresholds check` want one line: "surfaces.home.threshold: Input should be ...".
    return "; ".join(
        f"{_where(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors(include_url=False)
    )


def _where(loc: tuple[int | str, ...]) -> str:
    # pydantic marks an error in a mapping's key (a surface's name) with a "[key]" step.
    if loc and loc[-1] == "[key]":
        return f"{'.'.join(map(str, loc[:-1]))} (the name)"
    return ".".join(map(str, loc)) or "file"


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
