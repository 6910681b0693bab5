"""The decision a ranking service receives: keep or drop each candidate, judged on the user's
real next seven days.

A row scores each user's future items (higher = drop first). A `DecisionCase` holds one user's
scores of their future negatives, their future positives (items that are not also negatives)
and their other future items (exposures). A candidate is dropped when its score is above the
threshold, as the service does; an item without a score (-inf: no prediction, no SID) is kept.

- within-user AUC: per user with >= 1 future negative and >= 1 future positive, the chance that
  a negative scores above a positive, ties counting 1/2; the metric is the mean over users. A
  user without a prediction scores -inf everywhere: all ties, 0.5.
- caught / lost at a threshold: pooled over (user, item) pairs, the share of future negatives
  (positives) dropped.
- the threshold of a budget b of positives lost: the lowest real threshold (one of the scores,
  no interpolation) at which at most b of the future positives are dropped. Chosen on the
  validation split and applied to test; the test split's own choice is the oracle beside it.
- share dropped: the mean over users of the share of all their next-7-day items dropped.

Intervals are 95% user bootstraps: users are resampled, pooled rates recomputed from per-user
counts; two rows judged on the same users are resampled together (paired).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BUDGETS = (0.05, 0.10, 0.25)
# The budget that paired comparisons between rows (and the goals) are stated at.
HEADLINE_BUDGET = 0.10
DRAWS = 2000


@dataclass(frozen=True)
class DecisionCase:
    """One user's future items, scored."""

    user_id: str
    negatives: np.ndarray  # [n_neg]
    positives: np.ndarray  # [n_pos]
    others: np.ndarray  # [n_other] future exposures

    def all_items(self) -> np.ndarray:
        return np.concatenate([self.negatives, self.positives, self.others])


def user_auc(cases: Sequence[DecisionCase]) -> np.ndarray:
    """[users] within-user AUC, NaN for a user without both a future negative and positive."""
    out = np.full(len(cases), np.nan)
    for row, case in enumerate(cases):
        neg, pos = case.negatives, case.positives
        if len(neg) and len(pos):
            above = (neg[:, None] > pos[None, :]).mean()
            ties = (neg[:, None] == pos[None, :]).mean()
            out[row] = above + 0.5 * ties
    return out


def threshold_at(cases: Sequence[DecisionCase], budget: float) -> float:
    """The lowest real threshold that drops at most `budget` of the future positives (+inf,
    drop nothing, when no score does)."""
    pos = np.sort(_pooled(cases, "positives"))
    real = np.unique(pos[np.isfinite(pos)])
    if not len(pos) or not len(real):
        return float("inf")
    lost = (len(pos) - np.searchsorted(pos, real, side="right")) / len(pos)  # decreasing
    within = np.flatnonzero(lost <= budget)
    return float(real[within[0]]) if len(within) else float("inf")


def rates(cases: Sequence[DecisionCase], threshold: float) -> tuple[float, float]:
    """(caught, lost): the shares of future negatives and positives with a score above it."""
    neg, pos = _pooled(cases, "negatives"), _pooled(cases, "positives")
    caught = float((neg > threshold).mean()) if len(neg) else 0.0
    lost = float((pos > threshold).mean()) if len(pos) else 0.0
    return caught, lost


def share_dropped(cases: Sequence[DecisionCase], threshold: float) -> float:
    """Mean over users (with any future item) of the share of their future items dropped."""
    shares = [float((items > threshold).mean()) for c in cases if len(items := c.all_items())]
    return float(np.mean(shares)) if shares else 0.0


def _pooled(cases: Sequence[DecisionCase], kind: str) -> np.ndarray:
    parts = [getattr(c, kind) for c in cases]
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass(frozen=True)
class BudgetResult:
    """One budget of positives lost: the threshold chosen on validation, what it gives on test,
    and the test split's own choice (the oracle)."""

    budget: float
    threshold: float
    caught: float
    lost: float
    share_dropped: float
    caught_ci95: tuple[float, float]
    oracle_threshold: float
    oracle_caught: float


@dataclass(frozen=True)
class PerUser:
    """A row's figures per judged user (or user-week): what a paired comparison between rows
    judged on the same users resamples."""

    auc: np.ndarray  # [users] NaN outside the AUC population
    caught: np.ndarray  # [users] future negatives dropped at the headline budget's threshold
    negatives: np.ndarray  # [users] future negatives

    @property
    def mean_auc(self) -> float:
        """Within-user AUC: the mean over the users in its population (NaN if none is)."""
        return float(np.nanmean(self.auc)) if np.isfinite(self.auc).any() else float("nan")

    @classmethod
    def concat(cls, parts: Sequence[PerUser]) -> PerUser:
        """Disjoint judgements as one (the backtest's weeks, each at its own thresholds)."""
        fields = ("auc", "caught", "negatives")
        return cls(
            *(np.concatenate([np.zeros(0)] + [getattr(p, f) for p in parts]) for f in fields)
        )


@dataclass(frozen=True)
class DecisionResult:
    auc: float
    auc_ci95: tuple[float, float]
    auc_users: int
    budgets: dict[str, BudgetResult]  # "5%", "10%", "25%"
    users: int  # with a future negative or positive
    per_user: PerUser

    def to_dict(self) -> dict:
        return {
            "auc": self.auc,
            "auc_ci95": list(self.auc_ci95),
            "auc_users": self.auc_users,
            "users": self.users,
            "budgets": {
                k: vars(b) | {"caught_ci95": list(b.caught_ci95)} for k, b in self.budgets.items()
            },
        }


def budget_label(budget: float) -> str:
    return f"{round(budget * 100)}%"


def judge(
    test: Sequence[DecisionCase],
    validation: Sequence[DecisionCase] | None,
    budgets: Sequence[float] = BUDGETS,
    seed: int = 0,
) -> DecisionResult:
    """Every decision metric of one row. Thresholds come from `validation` (the test split's
    own choice where a row has no validation cases, and then the two columns agree)."""
    per_user = user_auc(test)
    valid = ~np.isnan(per_user)
    idx = _draws(len(test), seed)
    neg_n = np.asarray([len(c.negatives) for c in test], dtype=np.float64)
    out: dict[str, BudgetResult] = {}
    headline_caught = np.zeros(len(test))
    for budget in budgets:
        oracle = threshold_at(test, budget)
        chosen = threshold_at(validation, budget) if validation is not None else oracle
        caught, lost = rates(test, chosen)
        dropped = np.asarray([float((c.negatives > chosen).sum()) for c in test])
        if budget == HEADLINE_BUDGET:
            headline_caught = dropped
        out[budget_label(budget)] = BudgetResult(
            budget=budget,
            threshold=chosen,
            caught=caught,
            lost=lost,
            share_dropped=share_dropped(test, chosen),
            caught_ci95=_interval(_ratio_of_sums(dropped, neg_n, idx)),
            oracle_threshold=oracle,
            oracle_caught=rates(test, oracle)[0],
        )
    users = PerUser(per_user, headline_caught, neg_n)
    return DecisionResult(
        auc=users.mean_auc,
        auc_ci95=_interval(_nanmean_draws(per_user, idx)),
        auc_users=int(valid.sum()),
        budgets=out,
        users=len(test),
        per_user=users,
    )


def paired_difference(a: PerUser, b: PerUser, seed: int = 0) -> dict:
    """a - b on the same users: AUC and caught at the headline budget, each with a paired 95%
    user-bootstrap interval."""
    if len(a.auc) != len(b.auc) or not np.array_equal(a.negatives, b.negatives):
        raise ValueError(f"rows judged on different users ({len(a.auc)} vs {len(b.auc)})")
    idx = _draws(len(a.auc), seed)
    auc = _nanmean_draws(a.auc, idx) - _nanmean_draws(b.auc, idx)
    caught = _ratio_of_sums(a.caught, a.negatives, idx) - _ratio_of_sums(b.caught, b.negatives, idx)
    return {
        "auc": a.mean_auc - b.mean_auc,
        "auc_ci95": list(_interval(auc)),
        "caught_at_10pct": (a.caught.sum() - b.caught.sum()) / max(a.negatives.sum(), 1),
        "caught_at_10pct_ci95": list(_interval(caught)),
    }


def _draws(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, max(n, 1), size=(DRAWS, n))


def _nanmean_draws(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    x = values[idx]
    valid = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, x, 0.0).sum(axis=1) / valid.sum(axis=1)


def _ratio_of_sums(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num[idx].sum(axis=1) / den[idx].sum(axis=1)


def _interval(stat: np.ndarray) -> tuple[float, float]:
    stat = stat[~np.isnan(stat)]
    if not len(stat):
        return float("nan"), float("nan")
    lo, hi = np.percentile(stat, [2.5, 97.5])
    return float(lo), float(hi)


def merge_seeds(results: Sequence[DecisionResult], seed: int = 0) -> DecisionResult:
    """One row's seeds as one result: point figures are means over seeds; intervals and paired
    comparisons use each user's figures averaged over seeds."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    per_user = np.nanmean([r.per_user.auc for r in results], axis=0)
    caught = np.mean([r.per_user.caught for r in results], axis=0)
    idx = _draws(first.users, seed)

    def mean(attr: str, key: str) -> float:
        return float(np.mean([getattr(r.budgets[key], attr) for r in results]))

    budgets = {}
    for key, b in first.budgets.items():
        budgets[key] = BudgetResult(
            budget=b.budget,
            threshold=mean("threshold", key),
            caught=mean("caught", key),
            lost=mean("lost", key),
            share_dropped=mean("share_dropped", key),
            caught_ci95=b.caught_ci95,
            oracle_threshold=mean("oracle_threshold", key),
            oracle_caught=mean("oracle_caught", key),
        )
    key = budget_label(HEADLINE_BUDGET)
    if key in budgets:
        budgets[key] = dataclasses.replace(
            budgets[key],
            caught_ci95=_interval(_ratio_of_sums(caught, first.per_user.negatives, idx)),
        )
    return DecisionResult(
        auc=float(np.mean([r.auc for r in results])),
        auc_ci95=_interval(_nanmean_draws(per_user, idx)),
        auc_users=first.auc_users,
        budgets=budgets,
        users=first.users,
        per_user=PerUser(per_user, caught, first.per_user.negatives),
    )
