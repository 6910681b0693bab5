"""Model-side measurements used by the curriculum: candidate likelihoods and constrained SIDs.

Alignment accuracy (paper table 3) ranks the four candidate SIDs by the model's log-likelihood
of each as the completion, so it measures what the model prefers rather than what a sampler
happened to draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessorList

from conrec.model.backbone import encode_completion, encode_prompt
from conrec.model.constrained import SIDLogitsProcessor
from conrec.model.sids import format_sid
from conrec.model.trie import SIDTrie


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompt: str, completions: Sequence[str]) -> np.ndarray:
    """Sum of token log-probs of each completion (plus EOS) after `prompt`: [len(completions)].

    The prompt is run once; every completion is scored against a copy of its KV cache.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    rows = [encode_completion(tokenizer, c) for c in completions]
    cache = None
    if len(prompt_ids) > 1:
        prefix = torch.tensor([prompt_ids[:-1]], device=model.device)
        cache = model(input_ids=prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(rows))
    width = max(len(r) for r in rows)
    # Each row feeds the prompt's last token, then its completion but for the final token.
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    targets = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width))
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor([prompt_ids[-1], *r[:-1]])
        targets[i, : len(r)] = torch.tensor(r)
        scored[i, : len(r)] = 1.0
    mask = torch.cat([torch.ones((len(rows), len(prompt_ids) - 1), dtype=torch.long),
                      scored.long()], dim=1)  # fmt: skip
    ids, mask, targets, scored = (t.to(model.device) for t in (ids, mask, targets, scored))
    logits = model(input_ids=ids, attention_mask=mask, past_key_values=cache).logits  # [N, W, V]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    return (logp * scored).sum(-1).cpu().numpy()


def alignment_accuracy(model, tokenizer, samples: Sequence[dict]) -> float:
    """Share of alignment samples whose answer SID is the model's most likely candidate."""
    if not samples:
        return float("nan")
    model.eval()
    hits = 0
    for s in samples:
        options = [format_sid(c) for c in s["candidates"]]
        scores = completion_logprobs(model, tokenizer, s["prompt"], options)
        hits += list(s["candidates"][int(np.argmax(scores))]) == list(s["answer"])
    return hits / len(samples)


@torch.no_grad()
def generate_sids(
    model,
    tokenizer,
    prompts: Sequence[str],
    trie: SIDTrie | None,
    max_new_tokens: int,
    batch_size: int = 32,
) -> list[str]:
    """Greedy completion of each prompt, decoded to text (SID tokens kept).

    With a trie the output is a catalogue SID then EOS; without one it is free decoding, which
    measures how well the model has learned the SID format on its own.
    """
    model.eval()
    out: list[str] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                list(prompts[start : start + batch_size]),
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            ).to(model.device)
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                logits_processor=LogitsProcessorList([SIDLogitsProcessor(trie)] if trie else []),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = generated[:, batch["input_ids"].shape[1] :]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out
