"""The hot path's faster forms give the same answers as the plain ones."""

from __future__ import annotations

import dataclasses
import re
from itertools import compress
from pathlib import Path

import msgspec
import numpy as np
import pytest

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.codebook.similarity import (
    item_vectors,
    max_cosine,
    max_cosine_tables,
    prediction_tables,
    use_tables,
)
from conrec.service.api.schemas import Candidate, FilterRequest, ItemIdsRequest, decode_request
from conrec.service.core.prediction_cache import CachedPrediction
from conrec.service.core.state import LoadedCodebook
from conrec.service.filtering import BadRequest, candidate_codes, resolve, split
from conrec.store.values import Prediction


@pytest.mark.parametrize(
    ("levels", "size", "dim", "m", "k"),
    [(3, 256, 32, 1000, 20), (1, 8, 4, 50, 3), (2, 16, 8, 7, 1), (4, 5, 3, 200, 20)],
)
def test_dot_table_scoring_equals_max_cosine(levels, size, dim, m, k) -> None:
    rng = np.random.default_rng(levels * 1000 + size)
    for trial in range(5):
        codewords = rng.normal(size=(levels, size, dim)).astype(np.float32)
        if trial == 1:
            codewords *= 1e-3  # small vectors
        if trial == 2:
            codewords[:, 0] = 0.0  # all-zero SID (0, ..., 0): cosine 0, as max_cosine gives
        codebook = Codebook(codewords)
        cand = rng.integers(0, size, size=(m, levels))
        cand[0] = 0
        pred = rng.integers(0, size, size=(k, levels))
        tables = prediction_tables(codebook, codebook.decode_normalized(pred))
        fast = max_cosine_tables(codebook, cand, tables)
        assert fast.dtype == np.float32
        assert fast.shape == (m,)
        np.testing.assert_allclose(fast, max_cosine(codebook, cand, pred), atol=2e-5)


def test_squared_norms_equal_the_decoded_norms() -> None:
    rng = np.random.default_rng(1)
    codebook = Codebook(rng.normal(size=(3, 64, 16)).astype(np.float32))
    codes = rng.integers(0, 64, size=(500, 3))
    expected = (codebook.decode(codes).astype(np.float64) ** 2).sum(-1)
    np.testing.assert_allclose(codebook.squared_norms(codes), expected, rtol=1e-5)
    assert codebook.gram is codebook.gram  # computed once


def test_tables_are_used_only_where_they_pay() -> None:
    small = Codebook(np.zeros((3, 256, 8), np.float32))
    assert use_tables(small, 1000)
    assert not use_tables(small, 100)  # fewer candidates than table rows: decode them
    huge = Codebook(np.zeros((3, 4096, 1), np.float32))
    assert not use_tables(huge, 1_000_000)  # Gram tables would be too large


def _codebook(size: int) -> Codebook:
    return Codebook(np.zeros((3, size, 2), np.float32))


def _ids(cands: list[Candidate]) -> list[str]:
    return [c.item_id for c in cands]


def _items(codebook: Codebook) -> ItemSIDTable:
    return ItemSIDTable(np.array(["known"]), np.array([[1, 2, 3]], np.uint16), codebook.version)


@pytest.mark.parametrize("size", [256, 300])
def test_candidate_codes_on_both_conversion_paths(size: int) -> None:
    codebook = _codebook(size)
    rng = np.random.default_rng(size)
    codes = rng.integers(0, size, size=(50, 3))
    cands = [Candidate(f"i{i}", c) for i, c in enumerate(codes.tolist())]
    cands.append(Candidate("known"))  # resolved through the item table (a tuple)
    cands.append(Candidate("new"))  # unknown: kept unscored
    out, unknown = candidate_codes(codebook, _items(codebook), cands, _ids(cands))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, np.vstack([codes, [[1, 2, 3]]]))
    assert unknown == [51]


@pytest.mark.parametrize("body", ["ids", "mixed"])
def test_item_ids_are_looked_up_in_order_and_unknown_ones_reported(body: str) -> None:
    rng = np.random.default_rng(1)
    codebook = _codebook(256)
    table_codes = rng.integers(0, 256, size=(300, 3)).astype(np.uint16)
    items = ItemSIDTable(np.array([f"i{i}" for i in range(300)]), table_codes, codebook.version)
    picks = rng.choice(300, size=100, replace=False)
    cands = [Candidate(f"i{p}") for p in picks]
    expected = table_codes[picks].astype(np.int64)
    if body == "mixed":  # every third candidate carries its own SID, which wins
        for j in range(0, 100, 3):
            own = rng.integers(0, 256, size=3)
            cands[j] = Candidate(cands[j].item_id, own.tolist())
            expected[j] = own
    cands[10:10] = [Candidate("new-1")]
    cands.append(Candidate("new-2"))
    out, unknown = candidate_codes(codebook, items, cands, _ids(cands))
    assert unknown == [10, 101]
    np.testing.assert_array_equal(out, expected)


def test_an_empty_item_table_leaves_every_id_unscored() -> None:
    codebook = _codebook(8)
    empty = ItemSIDTable(np.array([], dtype=str), np.zeros((0, 3), np.uint16), codebook.version)
    cands = [Candidate("a"), Candidate("b")]
    out, unknown = candidate_codes(codebook, empty, cands, _ids(cands))
    assert out.shape == (0, 3)
    assert unknown == [0, 1]


@pytest.mark.parametrize(
    ("size", "code", "message"),
    [
        (256, 256, "SID code 256 at level 1 is out of range [0, 256)"),
        (256, -1, "SID code -1 at level 1 is out of range [0, 256)"),
        (200, 200, "SID code 200 at level 1 is out of range [0, 200)"),
        (300, 300, "SID code 300 at level 1 is out of range [0, 300)"),
        (256, 2**70, "does not fit in 64 bits"),
    ],
)
def test_out_of_range_codes_are_bad_requests(size: int, code: int, message: str) -> None:
    codebook = _codebook(size)
    cands = [Candidate("a", [0, 0, 0]), Candidate("b", [0, code, 0])]
    with pytest.raises(BadRequest) as caught:
        candidate_codes(codebook, _items(codebook), cands, _ids(cands))
    assert message in str(caught.value)


@pytest.mark.parametrize("n_dropped", [0, 1, 5, 64, 65, 700, 1000])
def test_split_equals_the_mask_form(n_dropped: int) -> None:
    rng = np.random.default_rng(n_dropped)
    ids = [f"item-{i}" for i in range(1000)]
    scores = np.zeros(1000, np.float32)
    at = rng.choice(1000, size=n_dropped, replace=False)
    scores[at] = rng.uniform(0.6, 1.0, size=n_dropped).astype(np.float32)
    kept, dropped, dropped_scores, _capped = split(ids, scores, 0.5)
    drop = scores > 0.5
    assert kept == list(compress(ids, ~drop))
    assert dropped == list(compress(ids, drop))
    assert dropped_scores == scores[drop].tolist()
    assert kept is not ids or n_dropped == 0


def test_bodies_of_item_ids_are_scored_from_item_vectors_as_from_codes() -> None:
    rng = np.random.default_rng(7)
    codebook = Codebook(rng.normal(size=(3, 256, 16)).astype(np.float32))
    table_codes = rng.integers(0, 256, size=(500, 3)).astype(np.uint16)
    items = ItemSIDTable(np.array([f"i{i}" for i in range(500)]), table_codes, codebook.version)
    fast = LoadedCodebook(codebook, items, Path("."), 0.0, item_vectors(codebook, table_codes))
    slow = dataclasses.replace(fast, vectors=None)
    cands = [Candidate(f"i{i}") for i in rng.choice(500, size=300, replace=False)]
    cands.insert(5, Candidate("new"))
    ids = _ids(cands)
    by_rows, by_codes = resolve(fast, cands, ids), resolve(slow, cands, ids)
    assert by_rows.codes is None
    assert by_codes.rows is None
    assert by_rows.unknown == by_codes.unknown == [5]
    told = resolve(fast, cands, ids, ids_only=True)  # the body was decoded as item ids only
    np.testing.assert_array_equal(told.rows, by_rows.rows)
    assert told.unknown == [5]
    codes = rng.integers(0, 256, size=(20, 3)).astype(np.uint16)
    prediction = CachedPrediction(Prediction(codes, "r1", 0.0, codebook.version))
    np.testing.assert_allclose(by_rows.scores(prediction), by_codes.scores(prediction), atol=2e-5)
    # A body with a single SID among the ids takes the codes path.
    cands[0] = Candidate(cands[0].item_id, [1, 2, 3])
    assert resolve(fast, cands, _ids(cands)).rows is None


def test_sids_found_in_the_table_score_from_its_item_vectors_as_from_codes() -> None:
    """The calibrated score locates candidates by SID for their features; found, their items'
    vectors stand for the decoded SIDs."""
    rng = np.random.default_rng(8)
    codebook = Codebook(rng.normal(size=(3, 256, 16)).astype(np.float32))
    table_codes = np.unique(rng.integers(0, 256, size=(600, 3)), axis=0)[:500].astype(np.uint16)
    items = ItemSIDTable(np.array([f"i{i}" for i in range(500)]), table_codes, codebook.version)
    loaded = LoadedCodebook(codebook, items, Path("."), 0.0, item_vectors(codebook, table_codes))
    picked = rng.choice(500, size=300, replace=False)
    # Every candidate with its SID, and a mixed body (every other one by id only).
    with_sids = [Candidate(f"i{i}", table_codes[i].tolist()) for i in picked]
    mixed = [c if n % 2 else Candidate(c.item_id) for n, c in enumerate(with_sids)]
    codes = rng.integers(0, 256, size=(20, 3)).astype(np.uint16)
    prediction = CachedPrediction(Prediction(codes, "r1", 0.0, codebook.version))
    for cands in (with_sids, mixed):
        by_codes = resolve(loaded, cands, _ids(cands))
        assert by_codes.rows is None
        by_rows, rows, found = by_codes.located(_ids(cands))
        assert by_rows.codes is None
        np.testing.assert_array_equal(rows, picked)
        np.testing.assert_array_equal(by_rows.rows, picked)
        np.testing.assert_array_equal(found, table_codes[picked])
        np.testing.assert_allclose(
            by_rows.scores(prediction), by_codes.scores(prediction), atol=2e-5
        )
    # A SID the table lacks (an item newer than the table): located as -1, scored from codes.
    absent = next(
        sid for sid in rng.integers(0, 256, size=(50, 3)) if items.rows_of_codes(sid[None])[0] < 0
    )
    newer = [Candidate("newer", absent.tolist()), *with_sids[1:]]
    by_codes = resolve(loaded, newer, _ids(newer))
    same, rows, _ = by_codes.located(_ids(newer))
    assert same is by_codes
    assert rows[0] == -1
    assert (rows[1:] == picked[1:]).all()


_FULL = msgspec.json.Decoder(FilterRequest).decode


@pytest.mark.parametrize(
    ("candidates", "ids_only"),
    [
        ('{"item_id": "a"}, {"item_id": "b"}', True),
        ('{"item_id": "a", "sid": null}', True),
        ('{"item_id": "a", "sid": [1, 2, 3]}, {"item_id": "b"}', False),
        ('{"item_id": "a"}, {"item_id": "b", "sid": [1, 2, 3]}', False),  # only the last
    ],
)
def test_bodies_without_sids_decode_as_item_ids_requests(candidates: str, ids_only: bool) -> None:
    body = b'{"user_id": "u", "surface": "home", "candidates": [%s]}' % candidates.encode()
    decoded = decode_request(body)
    assert isinstance(decoded, ItemIdsRequest) is ids_only
    assert msgspec.to_builtins(decoded) == msgspec.to_builtins(_FULL(body))


@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id": "u", "candidates": [{"item_id": "a"}, {"item_id": ""}]}',
        b'{"user_id": "u", "candidates": [{"item_id": "a"}, {"item_id": "b", "sid": "1"}]}',
        b'{"user_id": "u", "candidates": [{"item_id": "a", "x": 1}]}',
        b'{"user_id": "u", "candidates": [{"item_id": "a", "sid": [1]}, {"item_id": 2}]}',
        b'{"user_id": "u", "candidates": [{"item_id": "a"}], "threshold": "high"}',
        b'{"user_id": "u", "candidates": [{"item_id": "a", "sid": [1]}, oops]}',
        b'{"user_id": "u", "candidates": [{"item_id": "a"}, oops]}',
    ],
)
def test_bad_bodies_get_the_full_schemas_error(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError) as expected:
        _FULL(body)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        decode_request(body)
