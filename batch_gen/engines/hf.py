"""Trie-constrained beam search on an HF transformers causal LM, prefilling each prompt once.

The prompts are prefilled in one batched forward pass; each later SID level is one forward pass
that feeds every beam's newest token as one more token of its prompt's row, with a tree
attention mask so that a beam sees its prompt and its own SID tokens only. The prompt KV cache
is never copied per beam: with D SID tokens the search costs one prefill plus D - 1 passes of
`width` tokens per prompt. The model's attention must take a custom 4D mask (sdpa and eager
do; flash-attention does not).

The trie lets a beam take SID tokens only, and the constrained log-softmax reads only the
logits of the tokens it allows, so the search runs the decoder and multiplies its hidden states
by the LM head's SID rows alone (`sid_head`): the same scores without a vocabulary-wide matrix
product per beam. A model whose forward transforms its logits after the head (soft-capping,
scaling) takes the full forward instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch

from conrec.batch_gen.engines.base import (
    BeamSearchEngine,
    EngineConfig,
    ScoredSID,
    SIDDecoder,
    chunks,
    encode_prompts,
)
from conrec.batch_gen.engines.beam import (
    Beams,
    Exclusions,
    allowed_mask,
    best_sequences,
    excluded_mask,
    expand,
    initial_beams,
)
from conrec.model.backbone import device
from conrec.model.sids import SID
from conrec.model.trie import SIDTrie


def constrained_logprobs(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """log-softmax over the allowed tokens only; rows with nothing allowed are all -inf."""
    masked = logits.float().masked_fill(~allowed, float("-inf"))
    # A row with no allowed token would be NaN after log_softmax; it must stay impossible.
    return masked.log_softmax(dim=-1).masked_fill(~allowed, float("-inf"))


def sid_head(model, sid_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The LM head's rows for `sid_ids` (weight [S, H], bias [S] or None), or None when the
    model's forward changes the logits after its head, which a slice of the head would miss."""
    config = model.config
    for transform in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, transform, None) not in (None, 1, 1.0):
            return None
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        return None
    bias = None if head.bias is None else head.bias[sid_ids].detach()
    return head.weight[sid_ids].detach(), bias


def tree_attention_mask(
    prompt_mask: torch.Tensor, columns: torch.Tensor, kv_length: int
) -> torch.Tensor:
    """Additive [prompts, 1, beams, kv_length] mask: each beam's newest token sees its prompt's
    real tokens and the key columns of its own SID tokens (`columns`: [prompts, beams, steps]),
    never its sibling beams."""
    num_prompts, num_beams, _ = columns.shape
    visible = torch.zeros(
        num_prompts, num_beams, kv_length, dtype=torch.bool, device=columns.device
    )
    visible[:, :, : prompt_mask.shape[1]] = prompt_mask[:, None, :]
    visible.scatter_(2, columns, True)
    additive = torch.zeros(visible.shape, device=visible.device)
    additive = additive.masked_fill(~visible, torch.finfo(torch.float32).min)
    return additive[:, None]


class HFBeamEngine(BeamSearchEngine):
    def __init__(self, config: EngineConfig, trie: SIDTrie, model=None, tokenizer=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.trie = trie
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(
            config.model_path, local_files_only=True
        )
        self.model = model or AutoModelForCausalLM.from_pretrained(
            config.model_path, local_files_only=True, dtype=getattr(torch, config.dtype)
        ).to(device())
        self.model.eval()
        self.decode_sid = SIDDecoder(self.tokenizer, trie.depth)
        # The search scores SID tokens only: logits column c is token self.sid_ids[c].
        self.sid_ids = trie.tokens()
        self.column_of = np.full(int(self.sid_ids.max()) + 1, -1, dtype=np.int64)
        self.column_of[self.sid_ids] = np.arange(len(self.sid_ids))
        self.sid_head = sid_head(self.model, torch.from_numpy(self.sid_ids).to(self.model.device))

    def _left_padded(self, prompt_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(ids) for ids in prompt_ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids in prompt_ids])
        mask = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in prompt_ids])
        return input_ids.to(self.model.device), mask.to(self.model.device)

    def _forward(self, input_ids, mask, positions, cache=None, keep: int = 1, sids: bool = True):
        """Logits of the last `keep` positions (0: all): over the SID tokens only where
        `sids` and the model allows it (`sid_head`), else over the vocabulary."""
        inputs = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": positions,
            "past_key_values": cache,
            "use_cache": True,
        }
        if not (sids and self.sid_head):
            out = self.model(**inputs, logits_to_keep=keep)
            return out.logits, out.past_key_values
        out = self.model.get_decoder()(**inputs)
        hidden = out.last_hidden_state[:, -keep:] if keep else out.last_hidden_state
        return torch.nn.functional.linear(hidden, *self.sid_head), out.past_key_values

    def _prefill(self, prompt_ids: list[list[int]], sids: bool = True):
        input_ids, mask = self._left_padded(prompt_ids)
        # Positions count real tokens only, so a padded prompt sees what it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(input_ids, mask, positions, sids=sids)
        return logits[:, -1], cache, mask.bool(), positions[:, -1]

    @torch.inference_mode()
    def prefill(self, prompts: list[str]) -> None:
        """The model's own forward over the prompts (the benchmarks' reference)."""
        for batch in chunks(encode_prompts(self.tokenizer, prompts), self.config.batch_size):
            self._prefill(batch, sids=False)

    @torch.inference_mode()
    def generate_topk(
        self, prompts: list[str], k: int, exclude: Sequence[Collection[SID]] | None = None
    ) -> list[list[ScoredSID]]:
        width = self.config.width_for(k)
        size = self.config.batch_size
        excluded = self.decode_sid.exclusions(exclude, self.trie)
        results: list[list[ScoredSID]] = []
        for start, batch in enumerate(chunks(encode_prompts(self.tokenizer, prompts), size)):
            beams = self._search(
                batch, width, excluded[start * size : (start + 1) * size] if excluded else None
            )
            results.extend(
                [(self.decode_sid(tokens), score) for tokens, score in row]
                for row in best_sequences(beams, k)
            )
        return results

    def _search(
        self, prompt_ids: list[list[int]], width: int, excluded: Exclusions | None
    ) -> Beams:
        logits, cache, prompt_mask, last_position = self._prefill(prompt_ids)
        beams = initial_beams(len(prompt_ids))
        # Key columns in the cache of each beam's SID tokens: tree attention lets the beams of a
        # prompt share one copy of its prompt KV instead of one copy per beam.
        columns = np.zeros((len(prompt_ids), 1, 0), dtype=np.int64)
        # Beams fed so far take the cache columns after the prompt; a level may have fewer beams
        # than the width (fewer SIDs share its prefixes than the width asks for).
        kv_length = prompt_mask.shape[1]
        for step in range(self.trie.depth):
            if step:
                fed = kv_length + np.arange(beams.width)
                kv_length += beams.width
                columns = np.concatenate(
                    [
                        np.take_along_axis(columns, beams.parents[:, :, None], axis=1),
                        np.broadcast_to(fed, beams.parents.shape)[:, :, None],
                    ],
                    axis=2,
                )
                columns_t = torch.from_numpy(columns).to(prompt_mask.device)
                mask = tree_attention_mask(prompt_mask, columns_t, kv_length)
                positions = (last_position[:, None] + step).expand(-1, beams.width)
                logits, cache = self._forward(
                    torch.from_numpy(beams.tokens[:, :, -1]).to(prompt_mask.device),
                    mask.to(self.model.dtype),
                    positions,
                    cache,
                    keep=0,
                )
                logits = logits.reshape(-1, logits.shape[-1])
            beams = self._expand(beams, logits, width, excluded)
        return beams

    def _expand(
        self, beams: Beams, logits: torch.Tensor, width: int, excluded: Exclusions | None
    ) -> Beams:
        num_prompts, old_width, steps = beams.tokens.shape
        prefixes = beams.tokens.reshape(num_prompts * old_width, steps)
        # Columns of `logits`: the SID tokens (self.sid_ids), or the whole vocabulary.
        column_of = self.column_of if self.sid_head else None
        columns = logits.shape[-1]
        allowed = torch.from_numpy(allowed_mask(self.trie, prefixes, columns, column_of))
        logprobs = constrained_logprobs(logits, allowed.to(logits.device))
        banned = excluded_mask(prefixes, old_width, excluded, columns, column_of)
        if banned is not None:
            banned = torch.from_numpy(banned).to(logits.device)
            logprobs = logprobs.masked_fill(banned, float("-inf"))
        top = logprobs.topk(min(width, columns), dim=-1)
        shape = (*beams.scores.shape, -1)
        tokens = top.indices.view(shape).cpu().numpy()
        return expand(
            beams,
            self.sid_ids[tokens] if self.sid_head else tokens,
            top.values.view(shape).double().cpu().numpy(),
            width,
        )
