"""The serving process's set-up."""

from __future__ import annotations

import gc
import json

import pytest

from conrec.service.api.schemas import decode_request
from conrec.service.main import GC_THRESHOLD, tune_collector

BODY = json.dumps(
    {
        "user_id": "u",
        "candidates": [{"item_id": f"i{i}", "sid": [i % 7, 1, 2]} for i in range(1000)],
    }
).encode()


def _collections_while_serving() -> int:
    """Collections while four 1,000-SID bodies at a time are held, as four requests in flight."""
    seen = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    try:
        for _ in range(20):
            held = [decode_request(BODY) for _ in range(4)]
            del held
    finally:
        gc.callbacks.remove(count)
    return len(seen)


@pytest.fixture
def restore_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_collector")
def test_requests_with_sids_trigger_no_collection_once_tuned() -> None:
    gc.set_threshold(700, 10, 10)  # Python's default
    assert _collections_while_serving() > 0
    tune_collector()
    assert gc.get_threshold()[0] == GC_THRESHOLD
    assert gc.get_freeze_count() > 0
    assert _collections_while_serving() == 0
