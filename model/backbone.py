"""The LLM backbone: a local HF causal LM with SID tokens in its vocabulary.

Production loads a Qwen3 checkpoint from a local path and adds the SID tokens. Tests and the demo
build a tiny Qwen3-architecture model from a config, with a word-level tokenizer trained locally
on the item titles and prompt text, because nothing can be fetched from a model hub.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from model.sids import sid_tokens

SPECIAL_TOKENS = {"unk": "<unk>", "pad": "<pad>", "bos": "<s>", "eos": "</s>"}


@dataclass
class TinyBackboneConfig:
    """Shape of the tiny Qwen3 used by tests and the demo (a few hundred thousand parameters)."""

    hidden_size: int = field(default=64, metadata={"help": "Model width."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_attention_heads: int = field(default=4, metadata={"help": "Query heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "KV heads (GQA)."})
    # vLLM's CPU attention supports head sizes 32, 64, 80, ... only; 16 fails at engine start.
    head_dim: int = field(default=32, metadata={"help": "Per-head width (>= 32 for vLLM CPU)."})
    intermediate_size: int = field(default=128, metadata={"help": "MLP width."})
    max_position_embeddings: int = field(default=1024, metadata={"help": "Context length."})
    seed: int = field(default=0, metadata={"help": "Weight initialisation seed."})


def build_tokenizer(corpus: Iterable[str], levels: int, codebook_size: int):
    """A word-level fast tokenizer over `corpus` plus one token per SID (level, code).

    SID tokens are added tokens, so `<a_1><b_2>` always splits into exactly those tokens whatever
    surrounds them. They are not *special* tokens: TRL and vLLM decode completions with
    `skip_special_tokens=True`, which would strip every SID from the text the reward sees.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk"]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values()))
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=SPECIAL_TOKENS["unk"],
        pad_token=SPECIAL_TOKENS["pad"],
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
    )
    fast.add_tokens(_sid_added_tokens(levels, codebook_size))
    # Word-level pieces carry no spacing; decode joins them with spaces.
    fast.backend_tokenizer.decoder = None
    return fast


def add_sid_tokens(tokenizer, model, levels: int, codebook_size: int) -> int:
    """Add SID tokens to a pretrained tokenizer and resize the model's embeddings to match."""
    added = tokenizer.add_tokens(_sid_added_tokens(levels, codebook_size))
    if added:
        model.resize_token_embeddings(len(tokenizer))
    return added


def _sid_added_tokens(levels: int, codebook_size: int) -> list:
    from tokenizers import AddedToken

    return [
        AddedToken(tok, special=False, normalized=False, single_word=False)
        for tok in sid_tokens(levels, codebook_size)
    ]


def build_tiny_model(tokenizer, config: TinyBackboneConfig | None = None):
    """A randomly initialised Qwen3ForCausalLM sized by `config`, vocabulary from `tokenizer`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = config or TinyBackboneConfig()
    torch.manual_seed(cfg.seed)
    qwen_cfg = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    return Qwen3ForCausalLM(qwen_cfg)


def load_backbone(path: str | Path, levels: int, codebook_size: int):
    """(model, tokenizer) from a local checkpoint, with SID tokens present in the vocabulary."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    add_sid_tokens(tokenizer, model, levels, codebook_size)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
