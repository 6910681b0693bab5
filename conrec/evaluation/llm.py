"""An LLM row's outputs on the split: the nightly job's top-k and the candidates' likelihoods.

Predictions go through the batch job's own pieces (`build_user_prompts`, the prompt arguments
saved with the model, a trie-constrained beam engine, seen items excluded) with one change the
evaluation needs: users without history negatives are predicted too (`no_negatives="generate"`),
since a user without a prediction would count as a miss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from conrec.batch_gen.engines.base import BeamSearchEngine, EngineConfig
from conrec.batch_gen.engines.choice import constrained_engine
from conrec.batch_gen.job import UserPrompt, build_user_prompts
from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.split import EvalSplit
from conrec.model.likelihood import completion_logprobs
from conrec.model.prompts import trained_prompter
from conrec.model.sids import SID, format_sid


class LLMPredictor:
    """A trained model directory, prompted and searched exactly as the nightly job does."""

    def __init__(
        self, model_dir: str | Path, item_sids: ItemSIDTable, engine: str = "hf", batch_size=32
    ):
        from transformers import AutoTokenizer

        self.model_dir, self.item_sids, self.batch_size = str(model_dir), item_sids, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.context, self.prompt_fn = trained_prompter(self.model_dir, self.tokenizer)
        config = EngineConfig(model_path=self.model_dir, batch_size=batch_size)
        self.engine: BeamSearchEngine = constrained_engine(
            engine, self.model_dir, self.tokenizer, item_sids.codes, config
        )

    def prompts(self, split: EvalSplit) -> list[UserPrompt]:
        users, _ = build_user_prompts(
            split.windows, self.item_sids, self.context, "generate", self.prompt_fn
        )
        return users

    def topk(self, users: list[UserPrompt], k: int = 20) -> dict[str, list[SID]]:
        """user -> the k best SIDs, seen items excluded."""
        out: dict[str, list[SID]] = {}
        size = self.batch_size
        for start in tqdm(range(0, len(users), size), desc="top-k", unit="batch", leave=False):
            batch = users[start : start + size]
            results = self.engine.generate_topk(
                [u.prompt for u in batch], k, exclude=[u.seen for u in batch]
            )
            out.update(
                (u.user_id, [s for s, _ in row]) for u, row in zip(batch, results, strict=True)
            )
        return out

    def candidate_scores(self, users: list[UserPrompt], split: EvalSplit) -> list[np.ndarray]:
        """Per candidate set, the model's log-likelihood of each candidate's SID."""
        model = getattr(self.engine, "model", None)
        if model is None:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(self.model_dir, local_files_only=True)
        model.eval()
        prompts = {u.user_id: u.prompt for u in users}
        scores = []
        for cand in tqdm(split.candidates, desc="candidates", unit="user", leave=False):
            sids = [format_sid(self.item_sids.sid_of(item)) for item in cand.items]
            scores.append(completion_logprobs(model, self.tokenizer, prompts[cand.user_id], sids))
        return scores


def llm_outputs(
    model_dir: str | Path,
    split: EvalSplit,
    item_sids: ItemSIDTable,
    *,
    k: int = 20,
    engine: str = "hf",
) -> tuple[dict[str, list[SID]], list[np.ndarray]]:
    """(user -> top-k SIDs, candidate likelihoods) of a trained model on the split."""
    predictor = LLMPredictor(model_dir, item_sids, engine)
    users = predictor.prompts(split)
    return predictor.topk(users, k), predictor.candidate_scores(users, split)
