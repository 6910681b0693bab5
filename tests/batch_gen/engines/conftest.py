"""One tiny random backbone and catalogue per test session, shared by every engine test."""

from __future__ import annotations

import pytest

from conrec.batch_gen.engines.base import EngineConfig
from conrec.model.constrained import build_sid_trie
from conrec.model.trie import SIDTrie
from tests.batch_gen.engines.tiny_setup import TinySetup, build_tiny_setup


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinySetup:
    return build_tiny_setup(tmp_path_factory.mktemp("tiny_backbone"))


@pytest.fixture(scope="session")
def trie(tiny) -> SIDTrie:
    return build_sid_trie(tiny.sids, tiny.tokenizer)


@pytest.fixture(scope="session")
def config(tiny) -> EngineConfig:
    return EngineConfig(model_path=str(tiny.path), batch_size=4)


def _assert_same_topk(got: list, expected: list, tol: float = 1e-4) -> None:
    """Same SIDs in the same order with the same scores, except where scores tie within tol."""
    assert len(got) == len(expected)
    for (_, got_score), (_, expected_score) in zip(got, expected, strict=True):
        assert got_score == pytest.approx(expected_score, abs=tol)
    expected_scores = dict(expected)
    for sid, score in got:
        if sid in expected_scores:
            assert score == pytest.approx(expected_scores[sid], abs=tol)
        else:
            # Only a tie at the cut-off may swap which SID makes the list.
            assert score == pytest.approx(expected[-1][1], abs=tol)


@pytest.fixture(scope="session")
def assert_same_topk():
    return _assert_same_topk
