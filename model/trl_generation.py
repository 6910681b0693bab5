"""The one place that overrides TRL below its public API: GRPO rollouts constrained to the
catalogue's SIDs. TRL's GRPOTrainer has no hook for a logits processor on its HF-generate path,
so ``_generate_single_turn`` is overridden. Written against TRL 1.16.0 (`TRL_TESTED`);
`tests/model/test_trl_generation.py` fails with the installed version's name when an upgrade
changes the method this relies on.
"""

from __future__ import annotations

from transformers import LogitsProcessorList
from trl import GRPOTrainer

from conrec.model.constrained import SIDLogitsProcessor
from conrec.model.trie import SIDTrie

TRL_TESTED = "1.16.0"


class ConstrainedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose HF-generate rollouts only produce catalogue SIDs (trie, then EOS)."""

    def __init__(self, *args, sid_trie: SIDTrie, **kwargs):
        super().__init__(*args, **kwargs)
        self.sid_trie = sid_trie

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        # TRL calls `unwrapped_model.generate(**inputs, generation_config=...)` and a
        # GenerationConfig cannot carry a LogitsProcessor, so bind one (fresh per call: it reads
        # the prompt length on its first step) to the model's generate for this rollout only.
        model = self.accelerator.unwrap_model(self.model_wrapped)
        processors = LogitsProcessorList([SIDLogitsProcessor(self.sid_trie)])
        generate = model.generate
        model.generate = lambda *a, **kw: generate(*a, logits_processor=processors, **kw)
        try:
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)
        finally:
            del model.generate
