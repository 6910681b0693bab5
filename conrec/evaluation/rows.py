"""The rows of the evaluation: baselines, the LLM rows and what each LLM row changes.

Every LLM row is the curriculum config under evaluation with a few fields changed, so rows that
agree on a prefix of stages share those stages (`conrec.model.stage_plan`). The ablation follows
paper table 2, adding one module per row; its last row is the config as given, the product's
default:

    sft_neg      translation + next-negative SFT (negatives only)   = LC-Rec (neg. only)
    align        + item-level alignment
    grpo_next    + progressive-context GRPO, reward on the next negative only (scheme a)
    grpo_future  + ground truth: future-7-day negatives and their Swing items (scheme a)
    penalty      + future-positive penalty (scheme c)
    conrec       + the between-stage data step                       = CoNRec, the default

`sft_negpos` is LC-Rec (neg. & pos.): next-negative SFT with negatives and positives in the
prompt. `scheme_<x>` rows are the full model with paper table 4's reward scheme x.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports these rows; the training stack loads only when a row runs
    from conrec.model.train_config import CurriculumConfig

BASELINES = (
    "random",
    "popularity",
    "popularity_recent",
    "dislike_prior",
    "category_blocker",
    "swing",
    "factorization",
    "sasrec",
)
STOCHASTIC_BASELINES = ("random", "sasrec")
# Refitted at every cutoff of `conrec backtest`: random is the floor and SASRec too slow to refit
# weekly on a CPU (`--baselines` adds them).
BACKTEST_BASELINES = tuple(b for b in BASELINES if b not in ("random", "sasrec"))
# The scorers a practitioner tries first, judged on the decision by their own score (the
# history set: the user's own recent negatives through the served max cosine).
REFERENCE_SCORERS = (
    ("popularity", "own"),
    ("popularity_recent", "own"),
    ("dislike_prior", "own"),
    ("factorization", "own"),
    ("category_blocker", "own"),
    ("history_set", "max_cosine"),
)


@dataclass(frozen=True)
class LLMRow:
    key: str
    label: str
    change: Callable[[CurriculumConfig], CurriculumConfig]
    all_seeds: bool = False  # run every seed (else the first only)


def _reward(cfg: CurriculumConfig, **changes) -> CurriculumConfig:
    return dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, **changes))


def _cleaning(cfg: CurriculumConfig, enabled: bool) -> CurriculumConfig:
    return dataclasses.replace(cfg, cleaning=dataclasses.replace(cfg.cleaning, enabled=enabled))


def _sft(cfg: CurriculumConfig, alignment: bool, context: str) -> CurriculumConfig:
    return dataclasses.replace(cfg, use_alignment=alignment, warmup_context=context, grpo=[])


def _grpo(cfg: CurriculumConfig, ground_truth: str, scheme: str) -> CurriculumConfig:
    return _cleaning(_reward(cfg, ground_truth=ground_truth, scheme=scheme), enabled=False)


def _as_given(cfg: CurriculumConfig) -> CurriculumConfig:
    return cfg


_ROWS = (
    LLMRow("sft_neg", "SFT, negatives only (LC-Rec neg.)", partial(_sft, alignment=False,
           context="negatives"), all_seeds=True),
    LLMRow("sft_negpos", "SFT, negatives + positives (LC-Rec neg.&pos.)", partial(_sft,
           alignment=False, context="full")),
    LLMRow("align", "+ item-level alignment", partial(_sft, alignment=True, context="negatives")),
    LLMRow("grpo_next", "+ progressive GRPO, next-negative reward", partial(_grpo,
           ground_truth="next", scheme="a")),
    LLMRow("grpo_future", "+ future-7d negatives and Swing items", partial(_grpo,
           ground_truth="future7d+swing", scheme="a")),
    LLMRow("penalty", "+ future-positive penalty", partial(_grpo, ground_truth="future7d+swing",
           scheme="c")),
    LLMRow("conrec", "+ between-stage data step = CoNRec", _as_given, all_seeds=True),
    *(LLMRow(f"scheme_{s}", f"CoNRec, reward scheme {s}", partial(_reward, scheme=s))
      for s in "abde"),
)  # fmt: skip
LLM_ROWS: dict[str, LLMRow] = {row.key: row for row in _ROWS}
ABLATION = ("sft_neg", "align", "grpo_next", "grpo_future", "penalty", "conrec")
COMPARISON = ("sft_neg", "sft_negpos", "conrec")
REWARD_SCHEMES = {"a": "scheme_a", "b": "scheme_b", "c": "conrec", "d": "scheme_d", "e": "scheme_e"}
# Paper table 3: alignment accuracy right after alignment SFT, then after each kind of training.
FORGETTING = (
    ("next-negative SFT", "align"),
    ("GRPO, next-negative reward", "grpo_next"),
    ("CoNRec", "conrec"),
)
ROW_SETS = {
    "all": tuple(LLM_ROWS),
    "paper": (*COMPARISON, *ABLATION),
    "main": COMPARISON,
    "none": (),
}


def select_rows(spec: str) -> tuple[str, ...]:
    """LLM rows from a set name (`all`, `paper`, `main`, `none`) or comma-separated keys."""
    if spec in ROW_SETS:
        keys = ROW_SETS[spec]
    else:
        keys = tuple(k.strip() for k in spec.split(",") if k.strip())
    unknown = [k for k in keys if k not in LLM_ROWS]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; rows are {list(LLM_ROWS)} or {list(ROW_SETS)}")
    return tuple(dict.fromkeys(keys))
