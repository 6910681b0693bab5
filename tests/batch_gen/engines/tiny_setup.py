"""Tiny random backbones saved to disk, for engine, batch job and reliability tests and benchmarks.

Nothing can be fetched from a model hub, so both engines load this from a local directory. The
embeddings (tied to the LM head) are scaled up so next-token log-probs are spread out: with the
default initialisation they are nearly uniform, and near-ties would make engine parity a
coin toss on float rounding. Heads are 32 wide because vLLM's CPU attention kernels have no
16-wide variant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from conrec.model.backbone import TinyBackboneConfig, build_tiny_model, build_tokenizer
from conrec.model.sids import SID, format_sid

_WORDS = [f"w{i}" for i in range(200)] + ["user", "disliked", "liked", "history", "next", ":"]


@dataclass(frozen=True)
class TinySetup:
    path: Path
    tokenizer: object
    sids: list[SID]

    def prompts(self, count: int, length: int = 92, seed: int = 0) -> list[str]:
        """`count` prompts of exactly `length` tokens: words and catalogue SIDs, as histories."""
        rng = random.Random(seed)
        out = []
        for _ in range(count):
            pieces, size = ["user", "history", ":"], 3
            while size < length - 2:
                if length - 2 - size >= 3 and rng.random() < 0.4:
                    pieces.append(format_sid(rng.choice(self.sids)))
                    size += 3
                else:
                    pieces.append(rng.choice(_WORDS[:200]))
                    size += 1
            out.append(" ".join([*pieces, "next", ":"]))
        return out


def build_tiny_setup(
    out_dir: str | Path,
    num_sids: int = 300,
    levels: int = 3,
    codebook_size: int = 32,
    seed: int = 0,
    embedding_std: float = 0.5,
) -> TinySetup:
    """Save a random tiny Qwen3 and its tokenizer under `out_dir`, with `num_sids` random SIDs."""
    import torch

    rng = random.Random(seed)
    sids: set[SID] = set()
    while len(sids) < num_sids:
        sids.add(tuple(rng.randrange(codebook_size) for _ in range(levels)))
    tokenizer = build_tokenizer([" ".join(_WORDS)], levels, codebook_size)
    model = build_tiny_model(tokenizer, TinyBackboneConfig(head_dim=32), seed=seed)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, embedding_std)
    path = Path(out_dir)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return TinySetup(path=path, tokenizer=tokenizer, sids=sorted(sids))


def build_tiny_model_dir(ml100k, out: Path) -> Path:
    """A tiny random model whose vocabulary covers ml-100k's items and the prompts, saved to
    `out` with its tokenizer (what the batch job and its engines load)."""
    from conrec.model.backbone import TinyBackboneConfig, build_tiny_model, build_tokenizer
    from conrec.model.data.tables import item_texts
    from conrec.model.prompts import prompt_vocabulary

    tokenizer = build_tokenizer(item_texts(ml100k.items) + prompt_vocabulary(), 3, 32)
    # 32-wide heads: vLLM's CPU attention has no 16-wide kernel.
    cfg = TinyBackboneConfig(num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    build_tiny_model(tokenizer, cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
