import numpy as np
import pandas as pd
import pytest

from conrec.codebook.artifact import Codebook, ItemSIDTable
from conrec.evaluation.cases import served_cases
from conrec.model.data.splits import UserWindow
from conrec.report import (
    OperatingPoint,
    category_blocker,
    caught_at,
    recommend,
    threshold_sweep,
    write_report,
)

# One level, three codewords: e0, e1 and their diagonal (cos 0.7071 to e0).
CODEBOOK = Codebook(np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=np.float32))
TABLE = ItemSIDTable(np.array(["a", "b", "c", "d"]), np.array([[0], [1], [2], [0]], np.uint16), "v")
ITEMS = pd.DataFrame(
    {"item_id": ["a", "b", "c", "d"], "category": ["x", "y", "x, z", "x"], "title": "", "text": ""}
)


def _window(user: str) -> UserWindow:
    return UserWindow(
        user_id=user,
        cutoff=10,
        history_items=np.array(["d"]),
        history_ts=np.array([5]),
        history_polarity=np.array(["neg"]),
        next_negative="a",
        future_negatives=("a", "c"),
        future_positives=("b",),
    )


def test_sweep_and_blocker_on_a_hand_computed_user(tmp_path):
    predicted = {"u": np.array([[0]])}  # the user is predicted to dislike e0
    cases = served_cases([_window("u"), _window("no-prediction")], predicted, CODEBOOK, TABLE)
    assert len(cases) == 2  # a user without a prediction is scored too: it keeps everything

    sweep = threshold_sweep(cases, [0.5, 0.8, 1.0])
    assert sweep["negatives_caught"].tolist() == [0.5, 0.25, 0.0]
    assert sweep["positives_lost"].tolist() == [0.0, 0.0, 0.0]

    # The disliked "d" is in category x: the blocker drops a and c (x), keeps b (y).
    blocker = category_blocker([_window("u"), _window("no-prediction")], TABLE, ITEMS)
    assert blocker == OperatingPoint(negatives_caught=1.0, positives_lost=0.0)

    # Nothing positive scores above 0: the lowest real threshold losing none is 0 itself.
    (rec,) = recommend(cases, [0.05])
    assert (rec.threshold, rec.caught, rec.lost) == (pytest.approx(0.0, abs=1e-7), 0.5, 0.0)
    report = write_report(sweep, blocker, [rec], tmp_path)
    text = report.read_text()
    assert "| 5% | max_cosine | 0.0000 | 0.500 | 0.000 |" in text
    assert "| 0.80 | 0.250 | 0.000 |" in text
    assert "| category blocker | 1.000 | 0.000 |" in text
    assert (tmp_path / "filter_report.png").stat().st_size > 10_000


def test_sweep_is_monotone_in_the_threshold():
    rng = np.random.default_rng(0)
    cases = served_cases(
        [_window(f"u{i}") for i in range(30)],
        {f"u{i}": rng.integers(0, 3, size=(4, 1)) for i in range(30)},
        CODEBOOK,
        TABLE,
    )
    sweep = threshold_sweep(cases)
    for column in ("negatives_caught", "positives_lost"):
        assert (np.diff(sweep[column]) <= 0).all()
    assert sweep["threshold"].iloc[0] == pytest.approx(0.5)


def test_caught_at_interpolates_along_the_sweep():
    sweep = pd.DataFrame(
        {"threshold": [0.9, 0.7, 0.5], "negatives_caught": [0.2, 0.6, 0.9],
         "positives_lost": [0.1, 0.3, 0.7]}
    )  # fmt: skip
    assert caught_at(sweep, 0.2) == pytest.approx(0.4)
    assert caught_at(sweep, 0.5) == pytest.approx(0.75)
    assert caught_at(sweep, 0.0) == pytest.approx(0.2)  # held at the ends


def test_conrec_report_from_a_published_run_scores_every_user(
    tmp_path, ml100k_tables, artifact_dir
):
    from typer.testing import CliRunner

    from conrec.cli.main import app
    from conrec.codebook.artifact import load_item_sids
    from conrec.store.connection import connect, stop_embedded
    from conrec.store.runs import PredictionStore

    table = load_item_sids(artifact_dir)
    store_path = tmp_path / "store" / "redis.db"
    client = connect(None, embedded_path=store_path)
    writer = PredictionStore(client).begin_run("r1", codebook_version="v", model_version="m")
    users = ["1", "2", "3"]  # only three users have a prediction; the rest keep everything
    writer.write_batch(users, np.repeat(table.codes[None, :20], 3, axis=0))
    writer.publish()
    stop_embedded(client)
    result = CliRunner().invoke(
        app,
        ["report", "--store-path", str(store_path), "--codebook-dir", str(artifact_dir),
         "--data", str(ml100k_tables), "--out", str(tmp_path / "report")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(3 with a prediction)" in result.output, result.output
    text = (tmp_path / "report" / "filter_report.md").read_text()
    assert "| category blocker |" in text
    assert "## Recommended thresholds" in text
    # The ready thresholds file validates as the service reads it, at the 5% threshold.
    from conrec.service.core.thresholds import parse_thresholds

    served = parse_thresholds((tmp_path / "report" / "thresholds.yaml").read_bytes())
    assert served.mode == "enforce"
    assert f"| 5% | max_cosine | {served.default:.4f} |" in text
    # three users out of ~930 can drop only a sliver of all future negatives
    caught = [float(line.split("|")[2]) for line in text.splitlines() if line.startswith("| 0.50")]
    assert 0.0 < caught[0] < 0.02, text
    assert (tmp_path / "report" / "filter_report.png").stat().st_size > 10_000


def test_conrec_report_needs_exactly_one_source(tmp_path):
    from typer.testing import CliRunner

    from conrec.cli.main import app

    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_conrec_report_recommends_the_score_that_catches_more(
    tmp_path, ml100k, ml100k_tables, artifact_dir
):
    """With a calibration beside the codebook, the report recommends per budget for both
    scores and serves the one catching more: here a calibration leaning on the item's dislike
    prior, far ahead of the max cosine to three users' arbitrary predictions."""
    import shutil

    from typer.testing import CliRunner

    from conrec.cli.main import app
    from conrec.codebook.artifact import load_item_sids
    from conrec.codebook.calibration import FEATURES, LogisticModel, user_layout
    from conrec.model.calibration import fit_item_side, save_item_side
    from conrec.model.data.visibility import EventLog
    from conrec.model.mf import MFConfig
    from conrec.service.core.thresholds import parse_thresholds
    from conrec.store.connection import connect, stop_embedded
    from conrec.store.runs import PredictionStore

    codebook_dir = tmp_path / "codebook"
    shutil.copytree(artifact_dir, codebook_dir)
    table = load_item_sids(codebook_dir)
    log = EventLog.of(ml100k.events, table.item_ids.tolist())
    parts, mf = fit_item_side(log, int(log.ts.max()), table, 32, 5.0, MFConfig(factors=2))
    prior_only = LogisticModel(np.eye(len(FEATURES))[0] * 5, -1.0, np.zeros(6), np.ones(6))
    version = save_item_side(codebook_dir, table, parts, mf, prior_only,
                             LogisticModel(np.array([5.0, 0.0]), -1.0, np.zeros(2), np.ones(2)),
                             meta={"fitted": "test"})  # fmt: skip
    store_path = tmp_path / "store" / "redis.db"
    client = connect(None, embedded_path=store_path)
    width = len(user_layout(2))
    writer = PredictionStore(client).begin_run(
        "r1", codebook_version=table.codebook_version, model_version="m",
        user_features=width, calibration_version=version,
    )  # fmt: skip
    writer.write_batch(["1", "2", "3"], np.repeat(table.codes[None, :20], 3, axis=0),
                       np.zeros((3, width)))  # fmt: skip
    writer.publish()
    stop_embedded(client)
    result = CliRunner().invoke(
        app,
        ["report", "--store-path", str(store_path), "--codebook-dir", str(codebook_dir),
         "--data", str(ml100k_tables), "--out", str(tmp_path / "report")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report" / "filter_report.md").read_text()
    assert "| 5% | calibrated |" in text
    assert "| 5% | max_cosine |" in text
    served = parse_thresholds((tmp_path / "report" / "thresholds.yaml").read_bytes())
    assert served.score == "calibrated"
    assert "(5% budget, calibrated)" in " ".join(result.output.split())
