import pandas as pd
import pytest

from conrec.model.data.tables import (
    LoadReport,
    drop_non_interest_negatives,
    item_texts,
    validate_events,
    validate_items,
)


def _events(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "polarity", "reason"])


def test_bad_event_rows_are_counted_by_reason_and_dropped():
    raw = _events(
        [
            ("u1", "i1", "100", "neg", ""),
            ("u1", "i2", "not-a-time", "neg", ""),  # non-numeric timestamp
            ("", "i1", "101", "pos", ""),  # empty user id
            ("u2", "i9", "102", "pos", ""),  # unknown item
            ("u2", "i1", "103", "hate", ""),  # unknown polarity
            ("u2", "i2", "-5", "pos", ""),  # negative timestamp
            ("u2", "i2", "104.0", " POS ", None),
        ]
    )
    report = LoadReport("fixture")
    events = validate_events(raw, report, known_items={"i1", "i2"})
    assert events[["user_id", "item_id", "ts", "polarity"]].values.tolist() == [
        ["u1", "i1", 100, "neg"],
        ["u2", "i2", 104, "pos"],
    ]
    assert report.rows_read == 7
    assert report.rows_kept == 2
    assert report.dropped == {
        "non-numeric or negative timestamp": 2,
        "empty user_id or item_id": 1,
        "unknown item": 1,
        "unknown polarity": 1,
    }
    assert "dropped 1 (unknown item)" in report.summary()
    assert report.examples["unknown item"][0].startswith("{'user_id': 'u2'")


def test_missing_event_columns_is_a_clear_error():
    with pytest.raises(ValueError, match=r"need columns \['polarity'\]"):
        validate_events(pd.DataFrame({"user_id": [], "item_id": [], "ts": []}), LoadReport("x"))


def test_items_dedupe_and_float_ids_agree_with_int_ids():
    report = LoadReport("items")
    items = validate_items(
        pd.DataFrame({"item_id": [12.0, 12, None, 7], "title": ["A", "A again", "B", None]}),
        report,
    )
    assert items["item_id"].tolist() == ["12", "7"]
    assert items["title"].tolist() == ["A", ""]
    assert report.dropped == {"duplicate item_id": 1, "empty item_id": 1}


def test_non_interest_negative_reasons_are_dropped():
    events = _events(
        [
            ("u", "a", 1, "neg", "not_this_category"),
            ("u", "b", 2, "neg", "seen_or_bought"),
            ("u", "c", 3, "neg", "counterfeit"),
            ("u", "d", 4, "pos", "seen_or_bought"),  # positives keep whatever reason they carry
        ]
    )
    report = LoadReport("reasons")
    report.rows_kept = len(events)
    kept = drop_non_interest_negatives(events, report)
    assert kept["item_id"].tolist() == ["a", "d"]
    assert report.dropped == {"non-interest negative reason": 2}
    assert report.rows_kept == 2


def test_item_texts_join_title_category_and_text():
    items = pd.DataFrame(
        {
            "item_id": ["1", "2", "3"],
            "title": ["Toy Story", "", "Heat"],
            "category": ["Animation, Comedy", "", ""],
            "text": ["Released 1995", "", ""],
        }
    )
    assert item_texts(items) == [
        "Toy Story. Animation, Comedy. Released 1995",
        "(untitled)",
        "Heat",
    ]
