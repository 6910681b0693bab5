"""Training samples of every curriculum stage, built from the data layer (no torch).

SFT samples are dicts `{"prompt", "completion"}`; GRPO samples add the reward's ground-truth
columns `gt_sids` (by default the future-7d negatives + their Swing neighbours) and
`future_pos_sids`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from conrec.codebook.artifact import ItemSIDTable
from conrec.model import prompts
from conrec.model.data.splits import UserWindow
from conrec.model.data.tables import Polarity
from conrec.model.sids import format_sid


def translation_samples(items: pd.DataFrame, item_sids: ItemSIDTable) -> Iterator[dict]:
    """Bidirectional translation: SID -> title and title -> SID for every item with a SID, as a
    stream (two samples per item of a catalogue that may hold millions)."""
    for item_id, title in zip(items["item_id"].astype(str), items["title"], strict=True):
        sid = item_sids.sid_of(item_id)
        if sid is None:
            continue
        yield {"prompt": prompts.sid_to_title_prompt(sid), "completion": str(title)}
        yield {"prompt": prompts.title_to_sid_prompt(title), "completion": format_sid(sid)}


@dataclass
class AlignmentConfig:
    min_user_occurrences: int = field(
        default=3,
        metadata={
            "help": "Paper rule: the answer occurs more than this often in the user's negatives."
        },
    )
    min_item_negatives: int = field(
        default=10,
        metadata={
            "help": "Fallback when no user repeats a negative (e.g. ml-100k, one rating "
            "per user and item): the answer has more than this many negatives across "
            "users."
        },
    )
    max_per_user: int = field(default=4, metadata={"help": "Samples per user."})


def alignment_samples(
    events: pd.DataFrame, item_sids: ItemSIDTable, cfg: AlignmentConfig | None = None, seed: int = 0
) -> tuple[list[dict], str]:
    """Item-level alignment samples and the answer rule used ("paper" or "fallback").

    Each sample is one disliked item (the answer, drawn at random among the user's eligible
    negatives) and three of the same user's positives drawn at random as distractors, in a
    random order (all seeded); it also carries `candidates` and `answer` (SIDs) so accuracy can
    be scored by likelihood.
    """
    cfg = cfg or AlignmentConfig()
    neg = events[events["polarity"] == Polarity.NEG]
    per_user = Counter(zip(neg["user_id"], neg["item_id"], strict=True))
    eligible = {pair for pair, n in per_user.items() if n > cfg.min_user_occurrences}
    rule = "paper"
    if not eligible:
        per_item = neg["item_id"].value_counts()
        strong = set(per_item[per_item > cfg.min_item_negatives].index)
        eligible = {pair for pair in per_user if pair[1] in strong}
        rule = "fallback"
    rng = np.random.default_rng(seed)
    pos = events[events["polarity"] == Polarity.POS]
    positives = pos.groupby("user_id")["item_id"].apply(list).to_dict()
    answers: dict[str, list[str]] = {}
    for user, item in sorted(eligible):
        answers.setdefault(user, []).append(item)
    out = []
    for user, disliked in answers.items():
        liked = [s for s in (item_sids.sid_of(i) for i in positives.get(user, [])) if s]
        if len(liked) < 3:
            continue
        for k in rng.permutation(len(disliked))[: cfg.max_per_user].tolist():
            item = disliked[k]
            answer = item_sids.sid_of(item)
            # a liked item sharing the answer's SID (collision policy "allow") would be a tie
            pool = [s for s in liked if s != answer]
            if answer is None or len(pool) < 3:
                continue
            picks = rng.choice(len(pool), size=3, replace=False)
            candidates = [answer, *(pool[k] for k in picks)]
            candidates = [candidates[k] for k in rng.permutation(4)]
            out.append(
                {
                    "prompt": prompts.alignment_prompt(candidates),
                    "completion": format_sid(answer),
                    "candidates": [list(c) for c in candidates],
                    "answer": list(answer),
                    "user_id": str(user),
                }
            )
    return out, rule


def next_negative_samples(
    windows: Iterable[UserWindow],
    item_sids: ItemSIDTable,
    context: prompts.Context = "negatives",
    prompt: prompts.NextNegativePrompt = prompts.next_negative_prompt,
) -> list[dict]:
    """Warm-up SFT: the prompt of `context` and the next negative's SID."""
    out = []
    for w in windows:
        sid = item_sids.sid_of(w.next_negative) if w.next_negative else None
        if sid is not None:
            out.append({"prompt": prompt(w, item_sids, context), "completion": format_sid(sid)})
    return out


GROUND_TRUTHS = ("next", "future7d", "future7d+swing")


def ground_truth_items(
    window: UserWindow,
    ground_truth: str,
    swing_neighbours: dict[str, list[str]],
    swing_per_item: int,
) -> list[str]:
    """The reward's ground-truth set (paper section 3): the next negative only, the future-7d
    negatives, or those plus each one's best `swing_per_item` Swing neighbours."""
    if ground_truth == "next":
        return [window.next_negative] if window.next_negative else []
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"ground_truth must be one of {GROUND_TRUTHS}, got {ground_truth!r}")
    items = list(window.future_negatives)
    if ground_truth == "future7d+swing":
        for item in window.future_negatives:
            items += swing_neighbours.get(item, [])[:swing_per_item]
    return items


def grpo_samples(
    windows: Iterable[UserWindow],
    item_sids: ItemSIDTable,
    swing_neighbours: dict[str, list[str]],
    context: prompts.Context,
    swing_per_item: int = 3,
    ground_truth: str = "future7d+swing",
    prompt: prompts.NextNegativePrompt = prompts.next_negative_prompt,
) -> list[dict]:
    """GRPO prompts with their reward columns (and `window`, `user@cutoff`, naming the window);
    windows with an empty ground truth are skipped."""
    out = []
    for w in windows:
        items = ground_truth_items(w, ground_truth, swing_neighbours, swing_per_item)
        gt = _unique_sids(items, item_sids)
        if not gt:
            continue
        out.append(
            {
                "prompt": prompt(w, item_sids, context),
                "gt_sids": gt,
                "future_pos_sids": _unique_sids(w.future_positives, item_sids),
                "window": f"{w.user_id}@{w.cutoff}",
            }
        )
    return out


def stage_subsets(windows: Sequence[UserWindow], stages: int, salt: str) -> list[list[UserWindow]]:
    """Disjoint subsets of `windows`, one per stage, by a salted hash of (user, cutoff): each
    progressive stage trains on windows no other stage sees."""
    out: list[list[UserWindow]] = [[] for _ in range(stages)]
    for w in windows:
        digest = hashlib.sha1(f"{salt}:{w.user_id}:{w.cutoff}".encode()).hexdigest()
        out[int(digest[:8], 16) % stages].append(w)
    return out


def oversample(samples: Sequence[dict], flagged: Sequence[bool], factor: int) -> list[dict]:
    """Every flagged sample `factor` times, the others once (the between-stage data step)."""
    out: list[dict] = []
    for sample, flag in zip(samples, flagged, strict=True):
        out += [sample] * (factor if flag else 1)
    return out


def split_by_user(samples: Sequence[dict], eval_fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, eval) by a stable hash of each sample's user_id: no user is on both sides."""
    train, held_out = [], []
    for sample in samples:
        digest = hashlib.sha1(sample["user_id"].encode()).hexdigest()
        bucket = int(digest[:8], 16) / 0xFFFFFFFF
        (held_out if bucket < eval_fraction else train).append(sample)
    return train, held_out


def _unique_sids(items: Iterable[str], item_sids: ItemSIDTable) -> list[list[int]]:
    seen: dict[tuple[int, ...], None] = {}
    for item in items:
        sid = item_sids.sid_of(item)
        if sid is not None:
            seen.setdefault(sid)
    return [list(s) for s in seen]
