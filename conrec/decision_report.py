"""What the filter caught and lost in production: the service's sampled decision log joined with
the feedback users gave afterwards.

A logged decision is matched with a later feedback event on the same (user, item) within the
horizon (7 days), the user known in the log by their pseudonym (`conrec.service.core.sampling`,
keyed by the deployment's salt). Only decisions whose item stayed on the page can receive feedback:
`keep`, and `would_drop` (shadow mode, or a user the surface holds out). An enforced `drop` never
reaches the user, so caught and lost are measured on the held-out users and shadow surfaces:

- caught: of the future negatives on logged candidates, the share the filter would drop;
- lost: of the future positives on logged candidates, the share the filter would drop.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conrec.model.data.splits import HORIZON_DAYS
from conrec.model.data.tables import DAY_SECONDS, Polarity
from conrec.service.core.sampling import user_pseudonym

SHOWN = ("keep", "would_drop")


def read_decisions(path: str | Path) -> pd.DataFrame:
    """The decision log's lines as a frame (one row per candidate decision)."""
    frame = pd.read_json(path, lines=True, dtype={"user": str, "item": str})
    if frame.empty:
        raise ValueError(f"{path} holds no decisions")
    return frame


def read_feedback(path: str | Path) -> pd.DataFrame:
    """user_id, item_id, ts, polarity from a prepared-tables folder, a Parquet or a CSV file."""
    path = Path(path)
    if path.is_dir():
        path = path / "events.parquet"
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = {"user_id", "item_id", "ts", "polarity"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"{path} lacks columns {sorted(missing)} (has {sorted(frame.columns)}); write it "
            "with `conrec data prepare` or give user_id, item_id, ts (unix s), polarity"
        )
    return frame[["user_id", "item_id", "ts", "polarity"]].astype(
        {"user_id": str, "item_id": str, "ts": "int64", "polarity": str}
    )


def decisions_vs_feedback(
    decisions: pd.DataFrame,
    feedback: pd.DataFrame,
    salt: str,
    horizon_days: float = HORIZON_DAYS,
) -> pd.DataFrame:
    """Per surface and mode (`holdout` for held-out users): logged candidates, those that
    received feedback, and negatives caught / positives lost among them."""
    feedback = feedback.assign(
        user=[user_pseudonym(salt, u) for u in feedback["user_id"]], item=feedback["item_id"]
    )
    logged = decisions.assign(
        ts=decisions["ts"].astype("float64"),
        group_mode=decisions["mode"].where(~decisions["holdout"].astype(bool), "holdout"),
    ).sort_values("ts")
    events = feedback.assign(ts=feedback["ts"].astype("float64")).sort_values("ts")
    # Each feedback event takes the latest decision on its (user, item) before it, within the
    # horizon.
    matched = pd.merge_asof(
        events,
        logged[["ts", "user", "item", "decision", "surface", "group_mode"]],
        on="ts",
        by=["user", "item"],
        direction="backward",
        tolerance=float(horizon_days * DAY_SECONDS),
    ).dropna(subset=["decision"])
    matched = matched[matched["decision"].isin(SHOWN)]
    rows = []
    for (surface, mode), group in logged.groupby(["surface", "group_mode"]):
        answered = matched[(matched["surface"] == surface) & (matched["group_mode"] == mode)]
        negatives = answered[answered["polarity"] == Polarity.NEG]
        positives = answered[answered["polarity"] == Polarity.POS]
        # Under enforce, what was dropped never got feedback: nothing to measure there.
        measured = mode != "enforce"
        rows.append(
            {
                "surface": surface,
                "mode": mode,
                "decisions": len(group),
                "dropped": int((group["decision"] == "drop").sum()),
                "with_feedback": len(answered),
                "negatives": len(negatives),
                "positives": len(positives),
                "caught": _share(negatives["decision"] == "would_drop") if measured else None,
                "lost": _share(positives["decision"] == "would_drop") if measured else None,
            }
        )
    return pd.DataFrame(rows)


def _share(mask: pd.Series) -> float:
    return float(mask.mean()) if len(mask) else float("nan")


def _cell(value: float | None) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.3f}"


def render(table: pd.DataFrame) -> str:
    lines = [
        "# The filter in production: sampled decisions and later feedback",
        "",
        "Caught / lost: of the future negatives / positives on logged candidates that stayed on "
        "the page (holdout users and shadow surfaces), the share above the threshold. Enforced "
        "drops never reach users, so they receive no feedback.",
        "",
        "| surface | mode | decisions | dropped | with feedback | negatives | positives | "
        "caught | lost |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.surface} | {r.mode} | {r.decisions} | {r.dropped} | {r.with_feedback} | "
            f"{r.negatives} | {r.positives} | {_cell(r.caught)} | {_cell(r.lost)} |"
            for r in table.itertuples()
        ),
    ]
    return "\n".join(lines) + "\n"


def write_production_report(
    decision_log: str | Path, feedback: str | Path, salt: str, out: str | Path
) -> tuple[Path, str]:
    """production_report.md and .csv in `out` from the decision log and the feedback after it;
    returns the Markdown file and its text."""
    table = decisions_vs_feedback(read_decisions(decision_log), read_feedback(feedback), salt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = render(table)
    (out / "production_report.md").write_text(text)
    table.to_csv(out / "production_report.csv", index=False)
    return out / "production_report.md", text
