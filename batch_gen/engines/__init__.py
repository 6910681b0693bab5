"""Constrained beam search engines of the nightly batch job: top-K catalogue SIDs per prompt."""

from conrec.batch_gen.engines.base import BeamSearchEngine, EngineConfig, ScoredSID

__all__ = ["BeamSearchEngine", "EngineConfig", "ScoredSID"]
