"""GRPO rewards (paper eq. 6 and table 4), with TRL's reward signature.

Each reward is a plain function `f(prompts, completions, *, codebook, gt_sids, future_pos_sids,
**kwargs) -> list[float]`; TRL passes the dataset's per-sample columns as keyword lists:

- `gt_sids`: the ground-truth set, future-7d negatives plus their Swing neighbours (list of SIDs);
- `future_pos_sids`: the future positives (list of SIDs; may be empty).

`make_reward` binds the codebook and hyper-parameters with `functools.partial` (picklable; TRL
logs it under the wrapped function's name, `rewards/negative_feedback_reward/mean`).

A completion's first complete SID is its output. A completion with no SID, or one the codebook
rejects, gets `invalid_reward` (default -1.0: below every valid reward of schemes a, b and e, but
not below scheme c/d's floor of -1 - gamma; with constrained decoding it only happens for
truncated completions). An empty ground-truth or positive set contributes similarity 0.

Schemes (paper table 4), with s_neg = max cos(out, GT), s_pos = max cos(out, future positives):
    a: s_neg                     b: s_neg, zeroed below `threshold` (0.6)
    c: s_neg - gamma * s_pos     d: c with both terms zeroed below `threshold`
    e: hit-based, 10 ** -(levels - m) for the longest SID prefix match m > 0 with any GT item
       (1 / 0.1 / 0.01 for 3 / 2 / 1 matching levels), else 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from conrec.codebook.artifact import Codebook, InvalidSIDError
from conrec.codebook.similarity import max_cosine
from conrec.model.sids import SID, parse_sid

SCHEMES = ("a", "b", "c", "d", "e")
RewardFunc = Callable[..., list[float]]


def set_similarity(codebook: Codebook, sid: SID, targets: Sequence[Sequence[int]]) -> float:
    """Max cosine between a SID and a set of SIDs, decoded through the codebook; 0 if empty."""
    if not len(targets):
        return 0.0
    return float(max_cosine(codebook, np.asarray([sid]), np.asarray(targets, dtype=np.int64))[0])


def prefix_hit_reward(out: SID, targets: Sequence[Sequence[int]], levels: int) -> float:
    """Scheme (e): 10 ** -(levels - m) for the longest prefix match m > 0, else 0."""
    best = 0
    for target in targets:
        m = 0
        while m < levels and int(target[m]) == out[m]:
            m += 1
        best = max(best, m)
    return 10.0 ** -(levels - best) if best else 0.0


def scheme_reward(scheme: str, s_neg: float, s_pos: float, gamma: float, threshold: float) -> float:
    """Schemes (a)-(d) from the two similarities (pure scoring, no I/O)."""

    def cut(x: float) -> float:
        return x if x >= threshold else 0.0

    if scheme == "a":
        return s_neg
    if scheme == "b":
        return cut(s_neg)
    if scheme == "c":
        return s_neg - gamma * s_pos
    if scheme == "d":
        return cut(s_neg) - gamma * cut(s_pos)
    raise ValueError(f"similarity schemes are a-d, got {scheme!r}")


def output_sid(completion: str, codebook: Codebook) -> SID | None:
    """The completion's first SID if the codebook accepts it, else None."""
    sid = parse_sid(completion, codebook.levels)
    if sid is None:
        return None
    try:
        codebook.validate(sid)
    except InvalidSIDError:
        return None
    return sid


def negative_feedback_reward(
    prompts: list,
    completions: list[str],
    *,
    codebook: Codebook,
    gt_sids: list[list[Sequence[int]]],
    future_pos_sids: list[list[Sequence[int]]] | None = None,
    scheme: str = "c",
    gamma: float = 0.5,
    threshold: float = 0.6,
    invalid_reward: float = -1.0,
    **kwargs,
) -> list[float]:
    """Rewards of `completions` under `scheme` (default (c), paper eq. 6)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    positives = future_pos_sids or [[] for _ in completions]
    rewards = []
    for completion, gt, pos in zip(completions, gt_sids, positives, strict=True):
        sid = output_sid(completion, codebook)
        if sid is None:
            rewards.append(invalid_reward)
        elif scheme == "e":
            rewards.append(prefix_hit_reward(sid, gt, codebook.levels))
        else:
            s_neg = set_similarity(codebook, sid, gt)
            s_pos = set_similarity(codebook, sid, pos)
            rewards.append(scheme_reward(scheme, s_neg, s_pos, gamma, threshold))
    return rewards


def valid_sid_reward(
    prompts: list, completions: list[str], *, codebook: Codebook, **kwargs
) -> list[float]:
    """1.0 if the completion holds a valid SID, else 0.0 (weight 0 in GRPO: the valid-SID rate)."""
    return [float(output_sid(c, codebook) is not None) for c in completions]


def make_reward(codebook: Codebook, scheme: str = "c", **params) -> RewardFunc:
    """`negative_feedback_reward` bound to `codebook`, `scheme` and `params` (gamma, ...)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return functools.partial(negative_feedback_reward, codebook=codebook, scheme=scheme, **params)


def make_valid_sid_reward(codebook: Codebook) -> RewardFunc:
    return functools.partial(valid_sid_reward, codebook=codebook)
