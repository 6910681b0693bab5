"""The help text of a cutoff spec, apart from `conrec.model.data.splits` (which parses specs)
because it imports no pandas: the serving image's CLI shows it without the data extra installed."""

from __future__ import annotations

CUTOFF_HELP = (
    "midpoint (per user) | latest (all history) | last:<N>d (N days before the last event) | "
    "a date (2024-03-01, UTC) | unix seconds"
)
