import numpy as np

from conrec.codebook.quality import collision_rate, perplexity, resolve_collisions, usage


def test_usage_and_perplexity_on_known_distributions():
    codes = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])
    assert usage(codes, 8) == [0.5, 0.125]
    ppl = perplexity(codes, 8)
    assert abs(ppl[0] - 4.0) < 1e-9  # uniform over 4 codes
    assert abs(ppl[1] - 1.0) < 1e-9  # collapsed


def test_reassign_keeps_the_nearest_item_and_moves_the_others_to_free_codes():
    codes = np.array([[1, 1], [1, 1], [1, 1], [2, 0]])
    ranked = np.array([[1, 2, 3, 0], [1, 3, 2, 0], [1, 2, 3, 0], [0, 1, 2, 3]])
    priority = np.array([0.5, 0.1, 0.9, 0.2])  # item 1 is nearest to <1,1>
    out, unresolved = resolve_collisions(codes, ranked, priority, occupied=[(1, 2)])
    assert unresolved == 0
    assert out.tolist() == [[1, 3], [1, 1], [1, 0], [2, 0]]
    assert collision_rate(codes) == 0.5
    assert collision_rate(out) == 0.0


def test_full_prefix_leaves_an_unresolved_collision():
    codes = np.array([[0, 0], [0, 0], [0, 1]])
    ranked = np.array([[0, 1], [0, 1], [1, 0]])
    out, unresolved = resolve_collisions(codes, ranked, np.array([0.0, 1.0, 0.0]))
    assert unresolved == 1
    assert out.tolist() == [[0, 0], [0, 0], [0, 1]]
