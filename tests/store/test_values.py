"""Property tests of the contracts every prediction crosses: SID text, store packing, decoding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conrec.codebook.artifact import Codebook, InvalidSIDError
from conrec.model.sids import format_sid, parse_sid, parse_sids
from conrec.store.values import RunMeta, StoreError, pack_codes, pack_values, unpack_value

LEVELS = st.integers(min_value=1, max_value=8)


def run(k: int, d: int, features: int = 0) -> RunMeta:
    return RunMeta("r", 0.0, "cb", "m", k, d, 3600, user_features=features)


def unpack_codes(value: bytes, k: int, d: int) -> np.ndarray:
    codes, features = unpack_value(value, run(k, d))
    assert features is None
    return codes


@given(levels=LEVELS, data=st.data())
def test_a_sid_survives_its_text_form(levels, data):
    sids = data.draw(st.lists(st.tuples(*[st.integers(0, 65_535)] * levels), max_size=20))
    text = "".join(format_sid(s) for s in sids)
    assert parse_sids(text, levels) == sids
    assert parse_sid(text, levels) == (sids[0] if sids else None)


@given(st.text())
def test_parsing_arbitrary_text_never_raises_and_finds_only_whole_sids(text):
    for sid in parse_sids(text, 3):
        assert len(sid) == 3
        assert format_sid(sid) in text


@given(
    arrays(
        np.uint16, st.tuples(st.integers(1, 40), st.integers(1, 8)), elements=st.integers(0, 65_535)
    )
)
def test_packing_round_trips_every_uint16_prediction(codes):
    k, d = codes.shape
    packed = pack_codes(codes)
    assert len(packed) == 2 * k * d
    np.testing.assert_array_equal(unpack_codes(packed, k, d), codes)


@given(
    arrays(np.int64, st.integers(1, 20), elements=st.integers(-(2**40), 2**40)),
)
def test_codes_outside_uint16_are_refused_not_wrapped(codes):
    if codes.min() < 0 or codes.max() > 65_535:
        with pytest.raises(StoreError):
            pack_codes(codes)
    else:
        np.testing.assert_array_equal(unpack_codes(pack_codes(codes), len(codes), 1)[:, 0], codes)


@given(
    arrays(np.uint16, st.tuples(st.integers(1, 5), st.integers(1, 20), st.integers(1, 4))),
    st.integers(1, 20),
    st.data(),
)
def test_values_with_user_features_round_trip(codes, n_features, data):
    n, k, d = codes.shape
    features = data.draw(arrays(np.float32, (n, n_features)))
    packed = pack_values(codes, features)
    size = 2 * k * d + 4 * n_features
    assert len(packed) == n * size
    for i in range(n):
        got_codes, got_features = unpack_value(packed[i * size : (i + 1) * size],
                                               run(k, d, n_features))  # fmt: skip
        np.testing.assert_array_equal(got_codes, codes[i])
        np.testing.assert_array_equal(got_features, features[i])


@given(st.binary(max_size=200), st.integers(1, 30), st.integers(1, 4))
def test_a_value_of_the_wrong_length_is_an_error_not_garbage(value, k, d):
    if len(value) == 2 * k * d:
        assert unpack_codes(value, k, d).shape == (k, d)
    else:
        with pytest.raises(StoreError):
            unpack_codes(value, k, d)


CODEBOOK = Codebook(np.random.default_rng(0).normal(size=(3, 16, 8)).astype(np.float32))


@settings(max_examples=200)
@given(arrays(np.int64, st.tuples(st.integers(1, 5), st.just(3)), elements=st.integers(-5, 25)))
def test_decoding_accepts_exactly_the_in_range_codes(codes):
    if ((codes >= 0) & (codes < 16)).all():
        vectors = CODEBOOK.decode(codes)
        expected = sum(CODEBOOK.codewords[level][codes[:, level]] for level in range(3))
        np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
        norms = np.linalg.norm(CODEBOOK.decode_normalized(codes), axis=-1)
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    else:
        with pytest.raises(InvalidSIDError):
            CODEBOOK.decode(codes)
