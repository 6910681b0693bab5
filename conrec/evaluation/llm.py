"""An LLM row's outputs on the split: the nightly job's top-k and the candidates' likelihoods.

Predictions go through the batch job's own pieces (`build_user_prompts`, the prompt arguments
saved with the model, a trie-constrained beam engine, seen items excluded) with one change the
evaluation needs: users without history negatives are predicted too (`no_negatives="generate"`),
since a user without a prediction would count as a miss.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from batch_gen.engines.base import EngineConfig
from batch_gen.job import build_user_prompts
from batch_gen.nightly import make_engine, trained_prompt_kwargs
from codebook.artifact import ItemSIDTable
from model.evaluation.split import EvalSplit
from model.likelihood import completion_logprobs
from model.prompts import next_negative_prompt
from model.sids import SID, format_sid


def llm_outputs(
    model_dir: str | Path,
    split: EvalSplit,
    item_sids: ItemSIDTable,
    *,
    k: int = 20,
    engine: str = "hf",
    batch_size: int = 32,
) -> tuple[dict[str, list[SID]], list[np.ndarray]]:
    """(user -> top-k SIDs, per candidate set the log-likelihood of each candidate's SID)."""
    from transformers import AutoTokenizer

    from model.constrained import build_sid_trie

    model_dir = str(model_dir)
    kwargs = trained_prompt_kwargs(model_dir)
    context = kwargs.pop("context", "full")
    prompt_fn = functools.partial(next_negative_prompt, **kwargs)
    users, _ = build_user_prompts(split.windows, item_sids, context, "generate", prompt_fn)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    trie = build_sid_trie(item_sids.codes, tokenizer)
    beams = make_engine(engine, EngineConfig(model_path=model_dir, batch_size=batch_size), trie)
    predictions: dict[str, list[SID]] = {}
    for start in tqdm(range(0, len(users), batch_size), desc="top-k", unit="batch", leave=False):
        batch = users[start : start + batch_size]
        results = beams.generate_topk([u.prompt for u in batch], k, exclude=[u.seen for u in batch])
        predictions.update(
            (u.user_id, [sid for sid, _ in row]) for u, row in zip(batch, results, strict=True)
        )
    model = getattr(beams, "model", None) or _hf_model(model_dir)
    model.eval()
    prompts = {u.user_id: u.prompt for u in users}
    scores = []
    for cand in tqdm(split.candidates, desc="candidates", unit="user", leave=False):
        sids = [format_sid(item_sids.sid_of(item)) for item in cand.items]
        scores.append(completion_logprobs(model, tokenizer, prompts[cand.user_id], sids))
    return predictions, scores


def _hf_model(model_dir: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
