"""SASRec learns a sequential pattern in negative sequences that popularity cannot."""

import numpy as np
import pandas as pd
import torch

from conrec.codebook.artifact import ItemSIDTable
from conrec.evaluation.baselines import Catalogue
from conrec.evaluation.sasrec import SASRecBaseline, SASRecConfig
from conrec.model.data.splits import UserWindow
from conrec.model.data.visibility import EventLog


def test_sasrec_learns_what_follows_what_and_its_parameters_change():
    items = [f"i{k}" for k in range(12)]
    table = ItemSIDTable(np.array(items), np.array([[k, 0, 0] for k in range(12)], np.uint16), "v")
    catalogue = Catalogue.of(table, pd.DataFrame({"item_id": items, "category": ""}))
    # Every user dislikes i(k), then i(k+1), then i(k+2), ... from a random start.
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        start = int(rng.integers(0, 8))
        rows += [(f"u{u}", f"i{start + t}", t, "neg") for t in range(4)]
    log = EventLog.of(pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity"]), items)
    sasrec = SASRecBaseline(catalogue, SASRecConfig(dim=32, epochs=30, seed=0))
    untrained = SASRecBaseline(catalogue, SASRecConfig(dim=32, epochs=0, seed=0))
    untrained.fit(log, 10)
    sasrec.fit(log, 10)
    before = {k: v.clone() for k, v in untrained.model.state_dict().items()}
    changed = [k for k, v in sasrec.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("encoder" in k for k in changed)
    history = UserWindow("x", 10, np.array(["i3", "i4"]), np.array([0, 1]),
                         np.array(["neg", "neg"]), None, (), ())  # fmt: skip
    assert sasrec.scores(history).argmax() == 5  # i5 follows i3, i4
    empty = UserWindow("y", 10, np.array([], dtype=str), np.array([], dtype=int),
                       np.array([], dtype=str), None, (), ())  # fmt: skip
    assert sasrec.scores(empty).argmax() < 8  # the prior over first negatives
