"""Swing item-item similarity on the negative-feedback graph (paper eq. 5), numpy/scipy.

    Swi(i, j) = sum_{u, v in U(i) & U(j), u != v}  w_u * w_v / (|I(u) & I(v)| + alpha2)
                * Id(|U(i) & U(j)| > min_common_users) / sqrt(N_j)
    w_u       = (|I(u)| + alpha1) ** -theta

U(i) are the users who gave item i negative feedback, I(u) the items user u disliked, and N_j the
number of users who disliked j (|U(j)|), so popular dislikes do not swamp every neighbour list.
The sum runs over ordered pairs (u, v). The graph is capped first, deterministically, in the same
way as `conrec.model.swing_spark`: each user keeps their `max_items_per_user` most recent negatives,
then each item keeps its `max_users_per_item` most recent users (ties broken by id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse


@dataclass
class SwingConfig:
    alpha1: float = field(default=5.0, metadata={"help": "Smoothing of the user-activity weight."})
    alpha2: float = field(default=1.0, metadata={"help": "Smoothing of the pair-overlap term."})
    theta: float = field(default=0.3, metadata={"help": "Exponent of the user-activity weight."})
    min_common_users: int = field(
        default=5, metadata={"help": "Id(x) = 1 only when |U(i) & U(j)| > this (paper: 5)."}
    )
    max_items_per_user: int = field(
        default=200, metadata={"help": "Most recent negatives kept per user (scale cap)."}
    )
    max_users_per_item: int = field(
        default=500, metadata={"help": "Most recent users kept per item (scale cap)."}
    )
    top_k: int = field(default=10, metadata={"help": "Neighbours kept per item."})


SCORE_COLUMNS = ["item_i", "item_j", "score"]


def cap_graph(negatives: pd.DataFrame, cfg: SwingConfig) -> pd.DataFrame:
    """Distinct (user_id, item_id) edges after the per-user and per-item caps.

    `negatives` has user_id, item_id, ts; a repeated edge keeps its latest ts.
    """
    edges = negatives.groupby(["user_id", "item_id"], as_index=False)["ts"].max()
    edges = edges.sort_values(["user_id", "ts", "item_id"], ascending=[True, False, True])
    edges = edges[edges.groupby("user_id").cumcount() < cfg.max_items_per_user]
    edges = edges.sort_values(["item_id", "ts", "user_id"], ascending=[True, False, True])
    edges = edges[edges.groupby("item_id").cumcount() < cfg.max_users_per_item]
    return edges[["user_id", "item_id"]].reset_index(drop=True)


def swing_scores(negatives: pd.DataFrame, cfg: SwingConfig | None = None) -> pd.DataFrame:
    """Top-k Swing neighbours of every item: columns item_i, item_j, score (> 0), j != i."""
    cfg = cfg or SwingConfig()
    edges = cap_graph(negatives, cfg)
    users, u_idx = np.unique(edges["user_id"].to_numpy().astype(str), return_inverse=True)
    items, i_idx = np.unique(edges["item_id"].to_numpy().astype(str), return_inverse=True)
    a = sparse.csr_matrix(
        (np.ones(len(edges)), (u_idx, i_idx)), shape=(len(users), len(items))
    )  # [U, I] binary
    user_overlap = (a @ a.T).tocsr()  # [U, U] |I(u) & I(v)|
    item_overlap = (a.T @ a).tocsr()  # [I, I] |U(i) & U(j)|
    w = (np.asarray(a.sum(axis=1)).ravel() + cfg.alpha1) ** -cfg.theta  # [U]
    inv_sqrt_n = 1.0 / np.sqrt(np.asarray(a.sum(axis=0)).ravel())  # [I]
    a_csc = a.tocsc()
    rows: list[tuple[str, str, float]] = []
    for i in range(len(items)):
        s = a_csc.indices[a_csc.indptr[i] : a_csc.indptr[i + 1]]  # users of i
        if len(s) < 2:
            continue
        pair = np.outer(w[s], w[s]) / (user_overlap[s][:, s].toarray() + cfg.alpha2)  # [S, S]
        np.fill_diagonal(pair, 0.0)
        a_s = a[s].toarray()  # [S, I]
        # sum over u, v in S & U(j) of pair[u, v] = a_j^T pair a_j, for every j at once
        score = ((pair @ a_s) * a_s).sum(axis=0)  # [I]
        score *= item_overlap[i].toarray().ravel() > cfg.min_common_users
        score *= inv_sqrt_n
        score[i] = 0.0
        for j in _top_k(score, cfg.top_k):
            rows.append((items[i], items[j], float(score[j])))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def neighbours(scores: pd.DataFrame) -> dict[str, list[str]]:
    """item -> its Swing neighbours, best first (from `swing_scores` output)."""
    ordered = scores.sort_values(["item_i", "score", "item_j"], ascending=[True, False, True])
    return {item: group["item_j"].tolist() for item, group in ordered.groupby("item_i")}


def _top_k(score: np.ndarray, k: int) -> list[int]:
    positive = np.flatnonzero(score > 0)
    # Stable order (score desc, index asc) so both engines agree on ties.
    order = positive[np.lexsort((positive, -score[positive]))]
    return order[:k].tolist()
