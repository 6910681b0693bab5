"""Fixtures of the evaluation tests: ml-100k's items under the suite's trained codebook."""

import pytest

from conrec.codebook.artifact import load_item_sids


@pytest.fixture(scope="session")
def item_sids(artifact_dir):
    return load_item_sids(artifact_dir)
