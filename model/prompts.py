"""Every prompt the model sees, for training and for the nightly batch job (one source, no drift).

Items appear only as their SIDs (`conrec.model.sids.format_sid`), written back to back: SID tokens
are added tokens, so on a byte-level BPE tokenizer a space before one would cost a token of its own.
Prompts are short English (the pretrained backbone reads them; the tiny test backbone's
word-level vocabulary is built from `prompt_vocabulary()` and the item texts) and end with a
colon; the completion (a SID or a title) follows directly and the trainer appends EOS.
Next-negative prompts, the ones the nightly job sends, are aligned to whole KV blocks
(`next_negative_prompter`, `conrec.model.backbone.align_prompt`) in training and inference alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from conrec.model.backbone import align_prompt
from conrec.model.data.splits import UserWindow
from conrec.model.sids import SID, format_sid

Context = Literal["recent", "negatives", "full"]
CONTEXTS: tuple[Context, ...] = ("recent", "negatives", "full")

EMPTY = "none"
NEGATIVES = "Not interested:"
POSITIVES = "Liked:"
NEXT_NEGATIVE = "Next not interested:"
TRENDING = "Often not interested lately:"
PROMPT_CONFIG_FILE = "conrec_prompt.json"


class SIDLookup(Protocol):
    """Anything mapping item id -> SID codes (e.g. `conrec.codebook.artifact.ItemSIDTable`)."""

    def sid_of(self, item_id: str) -> tuple[int, ...] | None: ...


def sid_to_title_prompt(sid: Sequence[int]) -> str:
    """Translation SID -> title; the completion is the item's title."""
    return f"Item {format_sid(sid)} is titled:"


def title_to_sid_prompt(title: str) -> str:
    """Translation title -> SID; the completion is the item's SID."""
    return f"The item titled {title} is:"


def alignment_prompt(candidates: Sequence[Sequence[int]]) -> str:
    """Item-level alignment (paper section 3): which of four SIDs is the disliked one?

    One candidate was dismissed with "not interested", the others were liked; the completion is
    the disliked candidate's SID.
    """
    options = ", ".join(format_sid(c) for c in candidates)
    return (
        "A user clicked not interested on one of these items and liked the others: "
        f"{options}. The not interested item:"
    )


def next_negative_prompt(
    window: UserWindow,
    item_sids: SIDLookup,
    context: Context = "negatives",
    max_negatives: int = 20,
    max_positives: int = 20,
    recent_days: float = 3.0,
    trending: int = 0,
) -> str:
    """Next-negative prediction from a user's history; the completion is one SID.

    `context` selects progressive GRPO's stage: `recent` = negatives of the last `recent_days`,
    `negatives` = all negatives, `full` = negatives and positives. Lists keep the most recent
    `max_negatives` / `max_positives` items (oldest first); items without a SID are skipped.
    `trending` > 0 opens every context with that many of the items everyone dismissed most in
    the month up to the cutoff (`UserWindow.trending_negatives`, most dismissed first).
    """
    if context == "recent":
        negatives = window.recent_negatives(days=recent_days)
    elif context in ("negatives", "full"):
        negatives = window.negatives()
    else:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    text = f"{NEGATIVES} {_sid_list(negatives, item_sids, max_negatives)}."
    if trending > 0:
        # _sid_list keeps the tail of a list; this one is most dismissed first, so reverse it.
        common = window.trending_negatives[:trending][::-1]
        text = f"{TRENDING} {_sid_list(common, item_sids, trending)}. {text}"
    if context == "full":
        text += f" {POSITIVES} {_sid_list(window.positives(), item_sids, max_positives)}."
    return f"{text} {NEXT_NEGATIVE}"


class NextNegativePrompt(Protocol):
    def __call__(self, window: UserWindow, item_sids: SIDLookup, context: Context) -> str: ...


def next_negative_prompter(tokenizer, align_to: int = 0, **settings) -> NextNegativePrompt:
    """`next_negative_prompt` with `settings`, each prompt aligned to `align_to` tokens of
    `tokenizer`; takes a saved prompt config as it is (`align_to` absent: not aligned)."""

    def prompt(window: UserWindow, item_sids: SIDLookup, context: Context) -> str:
        text = next_negative_prompt(window, item_sids, context, **settings)
        return align_prompt(tokenizer, text, align_to)

    return prompt


def save_prompt_config(model_dir: str | Path, **prompt_kwargs) -> None:
    """Store the `next_negative_prompter` keyword arguments a model was trained with."""
    (Path(model_dir) / PROMPT_CONFIG_FILE).write_text(json.dumps(prompt_kwargs, indent=2))


def load_prompt_config(model_dir: str | Path) -> dict:
    """Keyword arguments for `next_negative_prompter` matching the model in `model_dir`."""
    return json.loads((Path(model_dir) / PROMPT_CONFIG_FILE).read_text())


def trained_prompt_kwargs(model_dir: str) -> dict:
    """The `next_negative_prompter` arguments the model was trained with (training writes them
    next to the model), so the nightly prompts cannot drift from training's; {} if absent."""
    path = Path(model_dir) / PROMPT_CONFIG_FILE
    return load_prompt_config(model_dir) if path.is_file() else {}


def trained_prompter(
    model_dir: str | Path, tokenizer, context: Context | None = None
) -> tuple[Context, NextNegativePrompt]:
    """The prompts a trained model is searched with: the context it was trained on (`full` for
    a model saved without one) unless ``context`` overrides it, and its prompter."""
    settings = trained_prompt_kwargs(str(model_dir))
    trained = settings.pop("context", "full")
    return context or trained, next_negative_prompter(tokenizer, **settings)


def prompt_vocabulary() -> list[str]:
    """The template words of every prompt, as a corpus for a word-level tokenizer."""
    sid: SID = (0,)
    return [
        sid_to_title_prompt(sid),
        title_to_sid_prompt(""),
        alignment_prompt([sid, sid]),
        f"{TRENDING} {EMPTY}. {NEGATIVES} {EMPTY}. {POSITIVES} {EMPTY}. {NEXT_NEGATIVE}",
    ]


def _sid_list(items: Sequence[str], item_sids: SIDLookup, cap: int) -> str:
    sids = [s for s in (item_sids.sid_of(i) for i in items) if s is not None]
    kept = sids[-cap:] if cap > 0 else []
    return "".join(format_sid(s) for s in kept) if kept else EMPTY
