"""Codebook quality measures and the SID collision policy (pure numpy).

Collision policy
----------------
Two items collide when greedy residual quantisation gives them the same SID. The model generates
SIDs, so a shared SID would make two items indistinguishable to it. Policies:

- ``reassign`` (default): within each group of colliding items, the item nearest to its last-level
  codeword keeps the SID; each other item moves to the nearest *free* last-level code under the
  same prefix (levels 1..D-1 unchanged). Its decoded vector then differs from its greedy one only
  in the last, finest level. If all K last-level codes under a prefix are taken the item keeps the
  shared SID, and the run reports it as an unresolved collision.
- ``allow``: keep greedy SIDs as they are; the item -> SID table may map several items to a SID.

New items encoded later (bulk encoder) go through the same policy against the occupied SIDs of
the existing table, so a catalogue's SIDs never change once published.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Literal

import numpy as np

CollisionPolicy = Literal["reassign", "allow"]
COLLISION_POLICIES: tuple[CollisionPolicy, ...] = typing.get_args(CollisionPolicy)


def usage(codes: np.ndarray, size: int) -> list[float]:
    """Per level, the fraction of the K codewords used by at least one item. codes: [N, D]."""
    return [len(np.unique(codes[:, d])) / size for d in range(codes.shape[1])]


def perplexity(codes: np.ndarray, size: int) -> list[float]:
    """Per level, exp(entropy) of the code distribution: K when uniform, 1 when collapsed."""
    out = []
    for d in range(codes.shape[1]):
        p = np.bincount(codes[:, d], minlength=size) / len(codes)
        p = p[p > 0]
        out.append(float(np.exp(-(p * np.log(p)).sum())))
    return out


def collision_rate(codes: np.ndarray) -> float:
    """1 - distinct SIDs / items: the share of items that would need another SID."""
    if len(codes) == 0:
        return 0.0
    return 1.0 - len(np.unique(codes, axis=0)) / len(codes)


def resolve_collisions(
    codes: np.ndarray,
    last_ranked: np.ndarray,
    priority: np.ndarray,
    occupied: Iterable[tuple[int, ...]] = (),
) -> tuple[np.ndarray, int]:
    """Apply the ``reassign`` policy.

    codes:       [N, D] greedy SIDs
    last_ranked: [N, R] last-level codes per item, nearest first (R <= K)
    priority:    [N] lower keeps its SID first (distance to the chosen last-level codeword)
    occupied:    SIDs already taken (e.g. the published catalogue, when adding new items)
                 - an item whose greedy SID is occupied moves like any other loser
    Returns (new codes [N, D], number of items left sharing a SID).
    """
    out = codes.copy()
    taken = {tuple(int(c) for c in sid) for sid in occupied}
    order = np.argsort(priority, kind="stable")
    # Winners first: every distinct free greedy SID stays with its nearest item, so moving a
    # loser can never bump an item that had a SID to itself.
    losers = []
    for i in order:
        sid = tuple(int(c) for c in codes[i])
        if sid in taken:
            losers.append(i)
        else:
            taken.add(sid)
    unresolved = 0
    for i in losers:
        prefix = tuple(int(c) for c in codes[i, :-1])
        for code in last_ranked[i]:
            sid = (*prefix, int(code))
            if sid not in taken:
                out[i, -1] = code
                taken.add(sid)
                break
        else:
            unresolved += 1
    return out, unresolved
