"""A platform's own ratings export through the whole pipeline: prepare -> codebook -> train (tiny)
-> nightly batch into a real Redis -> /filter over HTTP; then the same file again, skipped."""

from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from conrec.model.data.mapping import load_mapping
from conrec.model.data.prepared import load_tables
from conrec.pipeline import Pipeline, load_pipeline
from tests.launch_support import finished, launch
from tests.redis_support import isolated_prefix
from tests.service.support import service_process

TINY = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny-ml100k.yaml"
USERS = 200


@pytest.fixture(scope="module")
def exports(ml100k, tmp_path_factory) -> Path:
    """ml-100k's first users in two platforms' shapes, each with a few broken rows:
    - movielens.yaml: a MovieLens-latest CSV export: half-star ratings, trailing empty columns,
      `Title (year)` and pipe-separated genres;
    - feedback.yaml: a Parquet feedback log with a label column, integer ids and millisecond
      timestamps, and a TSV catalogue with `;`-separated tags."""
    folder = tmp_path_factory.mktemp("export")
    users = sorted(ml100k.events["user_id"].unique(), key=int)[:USERS]
    events = ml100k.events[ml100k.events["user_id"].isin(users)]
    half = (events.index % 2) * 0.5  # 4 -> 3.5 (an exposure), 2 -> 1.5 (still a dislike)
    rating = events["polarity"].map({"neg": 2.0, "exposure": 3.0, "pos": 4.5}) - half
    ratings = events.assign(rating=rating)[["user_id", "item_id", "rating", "ts"]]
    lines = [f"{u},{i},{r},{t},," for u, i, r, t in ratings.itertuples(index=False)]
    lines += ["1,1,4.0,not-a-time,,", ",1,4.0,880000000,,", "1,99999,1.0,880000000,,"]
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp,,\n" + "\n".join(lines) + "\n"
    )
    items = ml100k.items[ml100k.items["item_id"].isin(set(events["item_id"]))]
    movies = items.assign(
        title=items["title"] + " (1995)", genres=items["category"].str.replace(", ", "|")
    )
    movies.rename(columns={"item_id": "movieId"})[["movieId", "title", "genres"]].to_csv(
        folder / "movies.csv", index=False
    )
    (folder / "movielens.yaml").write_text(
        "events: ratings.csv\nitems: movies.csv\nuser_id: userId\nitem_id: movieId\n"
        "ts: timestamp\nts_unit: s\nrating: rating\ndislike_at_most: 2\nlike_at_least: 4\n"
        "title: title\ncategory: genres\ncategory_sep: '|'\n"
    )

    action = events["polarity"].map({"neg": "hide", "pos": "like", "exposure": "view"})
    log = pd.DataFrame(
        {
            "uid": [*events["user_id"].astype(int), 1],
            "vid": [*events["item_id"].astype(int), 1],
            "at_ms": [*(events["ts"] * 1000), 880000000000],
            "action": [*action, "share"],  # not in label_values: counted, not guessed
        }
    )
    log.to_parquet(folder / "feedback.parquet")
    items.assign(tags=items["category"].str.replace(", ", ";")).rename(
        columns={"item_id": "vid", "title": "name"}
    )[["vid", "name", "tags"]].to_csv(folder / "catalogue.tsv", sep="\t", index=False)
    (folder / "feedback.yaml").write_text(
        "events: feedback.parquet\nitems: catalogue.tsv\nuser_id: uid\nitem_id: vid\n"
        "ts: at_ms\nts_unit: ms\nlabel: action\n"
        "label_values: {hide: neg, like: pos, view: exposure}\n"
        "title: name\ncategory: tags\ncategory_sep: ';'\n"
    )
    return folder


SHAPES = {
    "movielens.yaml": {
        "empty user_id or item_id": 1,
        "non-numeric or negative timestamp": 1,
        "unknown item": 1,
    },
    "feedback.yaml": {"unknown polarity": 1},
}


def _quick_tiny_config(path: Path) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    few = {"max_steps": 2, "save_steps": 2}
    for stage in ("translation", "align", "warmup"):
        cfg[stage] |= few
    cfg["grpo"] = [s | few | {"prompts_per_step": 2} for s in cfg["grpo"]]
    cfg |= {"max_train_windows": 200, "eval_samples": 8}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("source", list(SHAPES))
def test_own_logs_through_prepare_codebook_train_batch_and_filter(
    source, exports, tmp_path, redis_url
):
    config = _quick_tiny_config(tmp_path / "quick.yaml")
    with isolated_prefix(redis_url) as prefix:
        pipeline_file = tmp_path / "weekly.yaml"
        pipeline_file.write_text(
            yaml.safe_dump(
                {
                    "run_dir": "run",
                    "steps": ["prepare", "codebook", "train", "batch"],
                    "prepare": {"source": str(exports / source)},
                    "codebook": {
                        "training": {"epochs": 40},
                        "publish_to": str(tmp_path / "served"),
                    },
                    "train": {"config": str(config)},
                    "batch": {
                        "redis_url": redis_url,
                        "store_prefix": prefix,
                        "max_users": 20,
                        "batch_size": 10,
                        "run_id": "own-1",
                    },
                }
            )
        )
        results = Pipeline(load_pipeline(pipeline_file)).run()
        assert [(r.step, r.status) for r in results] == [
            ("prepare", "ran"), ("codebook", "ran"), ("train", "ran"), ("batch", "ran"),
        ]  # fmt: skip
        run = tmp_path / "run"
        report = yaml.safe_load((run / "prepare" / "report.json").read_text())
        assert report["dropped"] == SHAPES[source]
        toy_story = load_tables(run / "prepare").items.set_index("item_id").loc["1"]
        assert toy_story["category"] == "Animation, Children's, Comedy"

        # The published predictions are served: a user's candidates by item id are scored.
        batch = yaml.safe_load((run / "batch.json").read_text())["details"]
        assert batch["status"] == "published"
        env = {
            "CONREC_REDIS_URL": redis_url,
            "CONREC_STORE_PREFIX": prefix,
            "CONREC_CODEBOOK_DIR": str(tmp_path / "served"),  # the versioned root
        }
        with service_process(env, tmp_path / "serve.log") as service:
            body = {
                "user_id": "1",
                "candidates": [{"item_id": str(i)} for i in range(1, 60)] + [{"item_id": "new"}],
            }
            answer = httpx.post(f"{service.url}/filter", json=body, timeout=10).json()
        assert answer["fail_open"] is False, answer
        assert answer["prediction_version"] == "own-1"
        assert answer["unscored"] == ["new"]
        assert len(answer["kept"]) + len(answer["dropped"]) == 60

        # Nothing changed: every step is skipped. A new night's export re-runs from prepare.
        again = Pipeline(load_pipeline(pipeline_file)).run()
        assert {r.status for r in again} == {"skipped"}
        Path(load_mapping(exports / source).events).touch()
        planned = Pipeline(load_pipeline(pipeline_file)).run(dry_run=True)
        assert [r.status for r in planned] == ["would run"] * 4


def test_a_step_without_its_inputs_says_where_they_should_come_from(tmp_path):
    (tmp_path / "nightly.yaml").write_text("run_dir: run\nsteps: [batch]\n")
    with pytest.raises(ValueError, match="needs the prepare step's output: add prepare"):
        Pipeline(load_pipeline(tmp_path / "nightly.yaml")).run()
    (tmp_path / "bad.yaml").write_text("run_dir: run\nsteps: [prepare, deploy]\n")
    with pytest.raises(ValueError, match=r"unknown steps \['deploy'\]"):
        load_pipeline(tmp_path / "bad.yaml")


def test_the_weekly_pipeline_runs_unchanged_under_accelerate_launch(exports, tmp_path, redis_url):
    """`accelerate launch --num_processes 2 conrec pipeline run`: rank 0 prepares, trains the
    codebook, publishes the batch; both ranks train the curriculum."""
    config = _quick_tiny_config(tmp_path / "quick.yaml")
    with isolated_prefix(redis_url) as prefix:
        pipeline_file = tmp_path / "weekly.yaml"
        pipeline_file.write_text(
            yaml.safe_dump(
                {
                    "run_dir": str(tmp_path / "run"),
                    "steps": ["prepare", "codebook", "train", "batch"],
                    "prepare": {"source": str(exports / "movielens.yaml")},
                    "codebook": {"training": {"epochs": 40}},
                    "train": {"config": str(config)},
                    "batch": {
                        "redis_url": redis_url, "store_prefix": prefix, "max_users": 20,
                        "batch_size": 10, "run_id": "launched-1",
                    },
                }
            )
        )  # fmt: skip
        log = tmp_path / "launch.log"
        finished(launch(["pipeline", "run", pipeline_file], log), log)
        run = tmp_path / "run"
        summary = yaml.safe_load((run / "train" / "summary.json").read_text())
        assert {s["processes"] for s in summary["stages"].values()} == {2}
        assert yaml.safe_load((run / "batch.json").read_text())["details"]["status"] == "published"
        assert {r.status for r in Pipeline(load_pipeline(pipeline_file)).run()} == {"skipped"}
