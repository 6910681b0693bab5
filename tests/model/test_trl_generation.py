"""The TRL internal that constrained GRPO rollouts override is still there, in the form the
override was written for; an upgrade that changes it fails here, by name, before a training
run trains on unconstrained rollouts."""

from __future__ import annotations

import inspect

import trl
from trl import GRPOTrainer

from conrec.model.trl_generation import TRL_TESTED, ConstrainedGRPOTrainer


def test_the_overridden_rollout_method_is_trls_and_calls_model_generate() -> None:
    upgrade = f"TRL {trl.__version__} (model/trl_generation.py was written for {TRL_TESTED})"
    method = getattr(GRPOTrainer, "_generate_single_turn", None)
    assert method is not None, f"{upgrade} has no GRPOTrainer._generate_single_turn"
    parameters = list(inspect.signature(method).parameters)
    assert parameters[:2] == ["self", "prompt_ids"], f"{upgrade}: its signature is {parameters}"
    # The override binds its logits processor to `conrec.model.generate`: TRL must still roll out
    # through it on the HF path.
    assert ".generate(" in inspect.getsource(method), f"{upgrade} no longer calls generate"
    assert ConstrainedGRPOTrainer._generate_single_turn is not method
