"""The one matplotlib setup every plot goes through (training curves, reports, results)."""

from __future__ import annotations


def pyplot():
    """`matplotlib.pyplot` on the file-only Agg backend: plots render with no display, and
    matplotlib loads only when something is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
