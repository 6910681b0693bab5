"""Semantic-ID tokens: one vocabulary token per (level, code), written `<a_12><b_3><c_7>`.

This module owns the textual form of a SID; prompts, the tokenizer, rewards and the batch job
all format and parse SIDs through it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LEVEL_LETTERS = "abcdefgh"
_TOKEN_RE = re.compile(r"<([a-h])_(\d+)>")

SID = tuple[int, ...]


def level_token(level: int, code: int) -> str:
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def is_sid_token(token: str) -> bool:
    """Whether a vocabulary entry is a SID token such as `<b_12>`."""
    return _TOKEN_RE.fullmatch(token) is not None


def sid_tokens(levels: int, size: int) -> list[str]:
    """Every SID token of a codebook with `levels` levels of `size` codes, level-major."""
    if not 1 <= levels <= len(LEVEL_LETTERS):
        raise ValueError(f"levels must be in [1, {len(LEVEL_LETTERS)}], got {levels}")
    return [level_token(lvl, code) for lvl in range(levels) for code in range(size)]


def format_sid(codes: Sequence[int]) -> str:
    return "".join(level_token(lvl, int(code)) for lvl, code in enumerate(codes))


def parse_sids(text: str, levels: int) -> list[SID]:
    """All complete SIDs in `text`, in order. Tokens out of level order are skipped.

    A SID is `levels` consecutive tokens with letters a, b, c, ... in that order; anything that
    breaks the pattern restarts the scan, so partial or garbled output yields no SID rather
    than a wrong one.
    """
    out: list[SID] = []
    current: list[int] = []
    for match in _TOKEN_RE.finditer(text):
        level, code = LEVEL_LETTERS.index(match.group(1)), int(match.group(2))
        if level == 0:
            current = [code]
        elif level == len(current):
            current.append(code)
        else:
            current = []
            continue
        if len(current) == levels:
            out.append(tuple(current))
            current = []
    return out


def parse_sid(text: str, levels: int) -> SID | None:
    """The first complete SID in `text`, or None when there is none."""
    found = parse_sids(text, levels)
    return found[0] if found else None
