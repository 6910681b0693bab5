"""Collaborative item vectors for the codebook: learnt from each user's events up to their own
cutoff, alike for items rated alike, none for an item nobody rated by then."""

import numpy as np
import pandas as pd

from conrec.codebook_training import collaborative_vectors


def test_items_rated_alike_are_close_and_unrated_items_have_no_vector():
    rows = []
    for u in range(200):
        # Two tastes: users 0-99 dislike a and b and like c and d; 100-199 the reverse.
        for t, item in enumerate("abcd"):
            polarity = "neg" if (u < 100) == (item in "ab") else "pos"
            rows.append((f"u{u}", item, t, polarity))
        # Four later events: each user's midpoint cutoff falls after d, before these.
        rows += [(f"u{u}", "late", 100 + t, "neg") for t in range(4)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"])
    events = events.sort_values(["user_id", "ts"]).reset_index(drop=True)
    vectors = collaborative_vectors(events, ["a", "b", "c", "d", "late", "never"], "midpoint")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    assert cos[0, 1] > 0.9
    assert cos[2, 3] > 0.9
    assert cos[0, 2] < cos[0, 1] - 0.5  # a far from c
    np.testing.assert_array_equal(vectors[4], 0)  # only rated after every cutoff
    np.testing.assert_array_equal(vectors[5], 0)  # never rated
