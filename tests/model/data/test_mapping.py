"""A platform's own files in several shapes, mapped onto the canonical tables and prepared."""

import logging

import pandas as pd
import pytest

from conrec.model.data import readers
from conrec.model.data.mapping import MappingError, SourceMapping, load_mapping, mapping_from
from conrec.model.data.prepared import load_tables, prepare_mapped, summarize

RATINGS = (
    "userId,movieId,rating,timestamp,,\n"
    "1,1,0.5,964982703,,\n"
    "1,2,4.5,964982704,,\n"
    "1,3,3.0,964982800,,\n"
    "2,3,1.0,not-a-time,,\n"
    "2,9,2.0,964982703,,\n"
    ",1,2.0,964982703,,\n"
    "2,1,five,964982703,,\n"
    "2,2,2.5,964982000,,\n"
)
MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children\n"
    '2,"American President, The (1995)",Comedy|Drama|Romance\n'
    "3,Heat (1995),Action|Crime|Thriller\n"
)
MOVIELENS = {
    "user_id": "userId", "item_id": "movieId", "ts": "timestamp", "rating": "rating",
    "dislike_at_most": 2.0, "like_at_least": 4.0, "title": "title", "category": "genres",
    "category_sep": "|",
}  # fmt: skip


@pytest.fixture
def movielens(tmp_path):
    (tmp_path / "ratings.csv").write_text(RATINGS)
    (tmp_path / "movies.csv").write_text(MOVIES)
    return tmp_path


def _prepare(tmp_path, **fields):
    report = prepare_mapped(mapping_from(fields), tmp_path / "out", progress=False)
    return report, load_tables(tmp_path / "out")


def test_half_star_ratings_with_trailing_empty_columns(movielens):
    report, ds = _prepare(
        movielens,
        events=str(movielens / "ratings.csv"),
        items=str(movielens / "movies.csv"),
        **MOVIELENS,
    )
    assert ds.events[["user_id", "item_id", "polarity"]].values.tolist() == [
        ["1", "1", "neg"],
        ["1", "2", "pos"],
        ["1", "3", "exposure"],
        ["2", "2", "exposure"],  # 2.5 lies between the thresholds
    ]
    assert report.dropped == {
        "empty user_id or item_id": 1,
        "non-numeric or negative timestamp": 1,
        "unknown item": 1,
        "unknown polarity": 1,
    }
    items = ds.items.set_index("item_id")
    assert items.loc["2", "title"] == "American President, The (1995)"
    assert (
        items.loc["1", "category"] == "Adventure, Animation, Children"
    )  # what categories_of reads
    assert summarize(movielens / "out")["users"] == 2


def test_label_column_with_ms_timestamps_in_a_tsv_without_items(tmp_path):
    (tmp_path / "log.tsv").write_text(
        "uid\tvideo\tms\taction\n"
        "a\tv1\t1649300000000\thide\n"
        "a\tv2\t1649300001000\tlike\n"
        "b\tv1\t1649300002000\tview\n"
        "b\tv3\t1649300003000\tshare\n"
    )
    report, ds = _prepare(
        tmp_path, events=str(tmp_path / "log.tsv"), user_id="uid", item_id="video", ts="ms",
        ts_unit="ms", label="action",
        label_values={"hide": "neg", "like": "pos", "view": "exposure"},
    )  # fmt: skip
    assert ds.events["ts"].tolist() == [1649300000, 1649300001, 1649300002]
    assert ds.events["polarity"].tolist() == ["neg", "pos", "exposure"]
    assert report.dropped == {"unknown polarity": 1}  # "share" is not mapped
    assert ds.items["item_id"].tolist() == ["v1", "v2"]
    assert ds.items["title"].tolist() == ["item v1", "item v2"]


def test_iso_dates_in_parquet_with_integer_ids_and_reasons(tmp_path):
    pd.DataFrame(
        {
            "user": [7, 7, 8, 8],
            "sku": [10, 11, 10, 12],
            "at": ["2024-03-01T10:00:00Z", "2024-03-02", "yesterday", "2024-03-01T11:00:00+01:00"],
            "kind": ["neg", "neg", "pos", "neg"],
            "why": ["not_for_me", "counterfeit", "", ""],
        }
    ).to_parquet(tmp_path / "log.parquet")
    pd.DataFrame({"sku": [10, 11, 12], "name": ["Red shoe", "Blue hat", "Green bag"]}).to_parquet(
        tmp_path / "items.parquet"
    )
    report, ds = _prepare(
        tmp_path, events=str(tmp_path / "log.parquet"), items=str(tmp_path / "items.parquet"),
        user_id="user", item_id="sku", ts="at", ts_unit="iso", polarity="kind", reason="why",
        title="name",
    )  # fmt: skip
    assert ds.events[["user_id", "item_id", "ts"]].values.tolist() == [
        ["7", "10", 1709287200],
        ["8", "12", 1709287200],  # 11:00 at +01:00 is 10:00 UTC
    ]
    assert report.dropped == {
        "non-numeric or negative timestamp": 1,
        "non-interest negative reason": 1,  # counterfeit: a quality rule's business
    }


def test_auto_timestamp_unit_logs_its_choice(tmp_path, caplog):
    (tmp_path / "log.csv").write_text("user_id,item_id,ts,polarity\nu,i,1649300000000,neg\n")
    with caplog.at_level(logging.INFO, logger="conrec.model.data.mapping"):
        _, ds = _prepare(
            tmp_path, events=str(tmp_path / "log.csv"), ts_unit="auto", polarity="polarity"
        )
    assert ds.events["ts"].tolist() == [1649300000]
    assert "read as ms" in caplog.text


def test_large_files_are_read_in_chunks_and_sorted_once(tmp_path, monkeypatch):
    rows = [f"u{u % 7},i{u % 5},{1000 - u},{'neg' if u % 3 else 'pos'}" for u in range(3000)]
    (tmp_path / "log.csv").write_text("user_id,item_id,ts,polarity\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(readers, "CHUNK_BYTES", 4096)
    assert len(list(readers.iter_chunks(tmp_path / "log.csv", ["user_id"]))) > 5
    report, ds = _prepare(tmp_path, events=str(tmp_path / "log.csv"), polarity="polarity")
    assert report.rows_kept == len(ds.events) == 1001  # ts >= 0 only for u <= 1000
    assert report.dropped == {"non-numeric or negative timestamp": 1999}
    expected = ds.events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(ds.events, expected)


def test_a_missing_column_is_one_line_naming_the_fix(movielens):
    with pytest.raises(MappingError) as err:
        prepare_mapped(
            mapping_from({"events": str(movielens / "ratings.csv"), "rating": "rating",
                          "dislike_at_most": 2, "user_id": "userId"}),
            movielens / "out",
        )  # fmt: skip
    message = str(err.value)
    assert "\n" not in message
    assert "no column 'item_id', 'ts'" in message
    assert "--item-id COLUMN, --ts COLUMN" in message
    assert "'movieId'" in message  # the file's own columns, to pick from


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({}, "exactly one of"),
        ({"rating": "r"}, "needs dislike_at_most"),
        ({"label": "l", "label_values": {"x": "dislike"}}, "neg, pos or exposure"),
        ({"polarity": "p", "ts_unit": "days"}, "ts_unit: 'days' is not one of"),
        ({"polarity": "p", "colour": "red"}, "unknown SourceMapping keys"),
    ],
)
def test_unusable_mappings_say_why(fields, match):
    # MappingError for what the mapping itself refuses, ConfigError for what is not a field.
    with pytest.raises(ValueError, match=match):
        mapping_from({"events": "log.csv", **fields})


def test_dataset_file_paths_resolve_from_its_folder_and_options_override(movielens):
    (movielens / "movielens.yaml").write_text(
        "events: ratings.csv\nitems: movies.csv\n"
        + "".join(f"{k}: {v!r}\n" for k, v in MOVIELENS.items())
    )
    mapping = load_mapping(movielens / "movielens.yaml", like_at_least=5.0)
    assert isinstance(mapping, SourceMapping)
    assert mapping.events == str(movielens / "ratings.csv")
    assert mapping.like_at_least == 5.0
    assert mapping.category_sep == "|"
