"""The operators' threshold report: for each threshold, how many of users' future negatives the
filter catches and how many of their future positives it loses, next to the rule-based category
blocker (paper fig. 1) as one point. Output: a Markdown table and a PNG.

Candidates are each user's real next seven days after the cutoff the predictions were made at;
scores are the service's own (`codebook.similarity.max_cosine` over decoded SIDs). The population
is every user with at least one future negative or positive; a user without a prediction keeps
every candidate, as the service fails open for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from codebook.artifact import Codebook, ItemSIDTable
from codebook.figures import pyplot
from codebook.similarity import max_cosine
from model.data.splits import UserWindow
from model.data.tables import categories_of

THRESHOLDS = tuple(np.round(np.arange(0.50, 1.0001, 0.02), 2))


@dataclass(frozen=True)
class UserCase:
    """One user's future week, scored: max cosine of each future negative / positive."""

    negative_scores: np.ndarray
    positive_scores: np.ndarray


def report_population(windows: Iterable[UserWindow]) -> list[UserWindow]:
    """The users the report scores: those with at least one future negative or positive."""
    return [w for w in windows if any(future_sets(w))]


def score_users(
    windows: Iterable[UserWindow],
    predictions: Mapping[str, np.ndarray],
    codebook: Codebook,
    item_sids: ItemSIDTable,
) -> list[UserCase]:
    """One case per user of the report's population; `predictions` are [K, D] codes, and a user
    without one scores -inf everywhere (every candidate kept)."""
    cases = []
    for w in report_population(windows):
        pred = predictions.get(w.user_id)
        neg, pos = future_sets(w)
        cases.append(
            UserCase(
                _scores(sorted(neg), pred, codebook, item_sids),
                _scores(sorted(pos), pred, codebook, item_sids),
            )
        )
    return cases


def future_sets(w: UserWindow) -> tuple[set[str], set[str]]:
    """The user's distinct future negatives, and future positives that are not also negatives."""
    neg = set(w.future_negatives)
    return neg, set(w.future_positives) - neg


def _scores(items: list[str], pred, codebook: Codebook, table: ItemSIDTable) -> np.ndarray:
    codes, _ = table.lookup(items)
    if pred is None:
        return np.full(len(codes), -np.inf, np.float32)
    return max_cosine(codebook, codes, pred) if len(codes) else np.zeros(0, np.float32)


def threshold_sweep(
    cases: list[UserCase], thresholds: Iterable[float] = THRESHOLDS
) -> pd.DataFrame:
    """Per threshold: share of future negatives dropped (caught) and of positives dropped (lost)."""
    neg = np.concatenate([c.negative_scores for c in cases] or [np.zeros(0)])
    pos = np.concatenate([c.positive_scores for c in cases] or [np.zeros(0)])
    rows = [
        {
            "threshold": float(t),
            "negatives_caught": float((neg > t).mean()) if len(neg) else 0.0,
            "positives_lost": float((pos > t).mean()) if len(pos) else 0.0,
        }
        for t in thresholds
    ]
    return pd.DataFrame(rows)


def caught_at(sweep: pd.DataFrame, positives_lost: float) -> float:
    """Future negatives caught by the sweep, interpolated at a given positives-lost rate."""
    ordered = sweep.sort_values(["positives_lost", "negatives_caught"])
    return float(np.interp(positives_lost, ordered["positives_lost"], ordered["negatives_caught"]))


def category_blocker(windows: Iterable[UserWindow], items: pd.DataFrame) -> dict[str, float]:
    """The rule-based baseline over the report's population: block every category of every
    item the user disliked."""
    categories = {row.item_id: categories_of(row.category) for row in items.itertuples()}
    caught = negatives = lost = positives = 0
    for w in report_population(windows):
        blocked = set().union(*(categories.get(i, set()) for i in w.negatives()))
        neg, pos = future_sets(w)
        caught += sum(bool(categories.get(item, set()) & blocked) for item in neg)
        lost += sum(bool(categories.get(item, set()) & blocked) for item in pos)
        negatives, positives = negatives + len(neg), positives + len(pos)
    return {
        "negatives_caught": caught / max(negatives, 1),
        "positives_lost": lost / max(positives, 1),
    }


def operators_report(
    windows: list[UserWindow],
    predictions: Mapping[str, np.ndarray],
    codebook: Codebook,
    item_sids: ItemSIDTable,
    items: pd.DataFrame,
    out_dir: str | Path,
) -> dict:
    """Sweep, blocker point and report files for `predictions` ([K, D] codes per user) at the
    cutoff of `windows`; returns the figures the report shows."""
    sweep = threshold_sweep(score_users(windows, predictions, codebook, item_sids))
    blocker = category_blocker(windows, items)
    path = write_report(sweep, blocker, out_dir)
    return {
        "report": str(path),
        "users": len(report_population(windows)),
        "with_prediction": sum(w.user_id in predictions for w in report_population(windows)),
        "blocker": blocker,
        "caught_at_blocker_loss": caught_at(sweep, blocker["positives_lost"]),
        "table": sweep.to_dict("records"),
    }


def write_report(sweep: pd.DataFrame, blocker: dict[str, float], out_dir: str | Path) -> Path:
    """`filter_report.md` and `filter_report.png` in `out_dir`; returns the Markdown path."""
    plt = pyplot()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(sweep["positives_lost"], sweep["negatives_caught"], marker="o", ms=3, label="CoNRec")
    for row in sweep.iloc[::5].itertuples():
        ax.annotate(f"{row.threshold:.2f}", (row.positives_lost, row.negatives_caught), fontsize=7)
    ax.scatter(
        [blocker["positives_lost"]], [blocker["negatives_caught"]], color="tab:red", marker="x",
        s=80, label="category blocker",
    )  # fmt: skip
    ax.set(
        xlabel="future positives lost (share dropped)",
        ylabel="future negatives caught (share dropped)",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        title="filter threshold sweep (labels: threshold)",
    )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "filter_report.png", dpi=110)
    plt.close(fig)

    lines = [
        "# Filter threshold report",
        "",
        "A candidate is dropped when its max cosine to the user's predicted negatives is above the",
        "threshold. Caught: share of the users' real future-7-day negatives dropped; lost: share",
        "of their future positives dropped. Pick a threshold for `deploy/thresholds.yaml`.",
        "",
        "![sweep](filter_report.png)",
        "",
        "| threshold | negatives caught | positives lost |",
        "|---|---|---|",
        *(
            f"| {r.threshold:.2f} | {r.negatives_caught:.3f} | {r.positives_lost:.3f} |"
            for r in sweep.itertuples()
        ),
        f"| category blocker | {blocker['negatives_caught']:.3f} | "
        f"{blocker['positives_lost']:.3f} |",
    ]
    path = out / "filter_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
