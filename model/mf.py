"""A biased matrix factorisation of explicit feedback, by alternating least squares (numpy).

    r(u, i) ~ mu + b_u + b_i + p_u . q_i        r = -1 (neg), 0 (exposure), +1 (pos)

fitted on the observed (user, item) pairs only, each factor row a ridge regression given the
others (`regularization` on factors and biases alike). A user is folded in at scoring time from
their own history: the same ridge step given the fitted item side, so a user's factors always
reflect exactly their events up to their cutoff, whatever the item side was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from conrec.model.data.tables import Polarity
from conrec.model.data.visibility import EventLog

VALUES = {Polarity.NEG.value: -1.0, Polarity.EXPOSURE.value: 0.0, Polarity.POS.value: 1.0}


@dataclass(frozen=True)
class MFConfig:
    factors: int = field(default=16, metadata={"help": "Latent dimensions."})
    regularization: float = field(default=10.0, metadata={"help": "Ridge penalty per row."})
    iterations: int = field(default=10, metadata={"help": "ALS sweeps (users, then items)."})
    seed: int = field(default=0, metadata={"help": "Initial item factors."})


class MatrixFactorization:
    def __init__(self, n_items: int, config: MFConfig):
        self.n_items, self.config = n_items, config
        self.mean = 0.0
        self.item_factors = np.zeros((n_items, config.factors))  # [N, F]
        self.item_bias = np.zeros(n_items)  # [N]

    def fit(self, users: np.ndarray, item_rows: np.ndarray, polarity: np.ndarray) -> None:
        """Fit on events (user id, item row (-1: skip), polarity); a repeated pair keeps its
        latest value."""
        keep = item_rows >= 0
        users, items = np.asarray(users)[keep], np.asarray(item_rows)[keep]
        values = np.asarray([VALUES[p] for p in np.asarray(polarity)[keep]])
        codes, user_index = np.unique(users, return_inverse=True)
        # The last event of a (user, item) pair wins: COO -> CSR would sum duplicates.
        pair = user_index.astype(np.int64) * self.n_items + items
        _, last = np.unique(pair[::-1], return_index=True)
        last = len(pair) - 1 - last
        user_index, items, values = user_index[last], items[last], values[last]
        self.mean = float(values.mean()) if len(values) else 0.0
        shape = (len(codes), self.n_items)
        by_user = sparse.csr_matrix((values - self.mean, (user_index, items)), shape=shape)
        by_item = by_user.T.tocsr()
        rng = np.random.default_rng(self.config.seed)
        q = rng.normal(0.0, 0.1, (self.n_items, self.config.factors))
        bi = np.zeros(self.n_items)
        p, bu = np.zeros((len(codes), self.config.factors)), np.zeros(len(codes))
        for _ in range(self.config.iterations):
            p, bu = _ridge_rows(by_user, q, bi, self.config.regularization)
            q, bi = _ridge_rows(by_item, p, bu, self.config.regularization)
        self.item_factors, self.item_bias = q, bi

    def fit_until(self, log: EventLog, until: int) -> None:
        """Fit on every event of `log` with ts <= until."""
        end = log.end(until)
        self.fit(log.events["user_id"].to_numpy()[:end], log.item_rows[:end], log.polarity[:end])

    def fold_in(self, item_rows: np.ndarray, polarity: np.ndarray) -> tuple[np.ndarray, float]:
        """(factors [F], bias) of a user with this history, given the fitted item side (rows
        -1 are skipped); zeros for an empty history."""
        keep = np.asarray(item_rows) >= 0
        items = np.asarray(item_rows)[keep]
        values = np.asarray([VALUES[p] for p in np.asarray(polarity)[keep]]) - self.mean
        row = sparse.csr_matrix(
            (values, (np.zeros(len(items), dtype=np.int64), items)), shape=(1, self.n_items)
        )
        p, bu = _ridge_rows(row, self.item_factors, self.item_bias, self.config.regularization)
        return p[0], float(bu[0])

    def predict_user(self, item_rows: np.ndarray, polarity: np.ndarray) -> np.ndarray:
        """[n_items] predicted ratings for a user with this history (rows -1 are skipped)."""
        factors, bias = self.fold_in(item_rows, polarity)
        return self.mean + bias + self.item_bias + self.item_factors @ factors


def _ridge_rows(
    ratings: sparse.csr_matrix, other: np.ndarray, other_bias: np.ndarray, reg: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each row r of `ratings`: [factors, bias] minimising
    sum_j (x_rj - bias_other_j - bias - f . other_j)^2 + reg * (|f|^2 + bias^2) over its
    observed j. Rows without observations get zeros."""
    n, k = ratings.shape[0], other.shape[1]
    design = np.hstack([other, np.ones((len(other), 1))])  # [M, F + 1]
    out = np.zeros((n, k + 1))
    penalty = reg * np.eye(k + 1)
    for r in range(n):
        lo, hi = ratings.indptr[r], ratings.indptr[r + 1]
        if lo == hi:
            continue
        cols = ratings.indices[lo:hi]
        x = design[cols]  # [n_r, F + 1]
        y = ratings.data[lo:hi] - other_bias[cols]
        out[r] = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    return out[:, :k], out[:, k]
