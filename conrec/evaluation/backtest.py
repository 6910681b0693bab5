"""`conrec backtest`: the weekly pipeline replayed at global cutoffs, every row fitted on the
events before each one: the like-for-like comparison of the LLM with the baselines.

At each cutoff T (weekly, the last one a horizon before the last event):

- the users judged are those with an event up to T and a negative or positive in the week after;
- every baseline is fitted on the events with ts <= T (one cutoff for everyone: exact);
- the LLM (the config's CoNRec curriculum) is trained on the events up to T at every
  `refit_every`-th cutoff and predicts at the cutoffs until the next retraining, from each user's
  history up to that cutoff: a model retrained every k weeks, as a platform runs it;
- each row's decision threshold for a budget is the one chosen on the previous cutoff's week
  (the first week only calibrates); the calibrated score's model is fitted on every week before
  (with the user's own last 20 negatives as the set, and with the LLM's predictions).

Figures pool the user-weeks: list metrics over every week, the decision over weeks 2..n (AUC the
mean over user-weeks; caught and lost pooled over (user-week, item) pairs). Layout of `out`:

    rows/<T>/<row>.json   one row's outputs at cutoff T (reused on rerun)
    models/<T>/           the LLM trained at T; stages/ shared stage cache
    backtest.json, backtest.md, backtest.png
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from conrec.batch_gen.engines.choice import Engine
from conrec.codebook.artifact import Codebook, ItemSIDTable, load_codebook, load_item_sids
from conrec.codebook.figures import pyplot
from conrec.evaluation.baselines import Catalogue
from conrec.evaluation.calibrated import (
    CALIBRATED,
    CALIBRATED_HISTORY,
    CALIBRATED_POOLED,
    FULL,
    Pairs,
    fit_model,
    score_pairs,
    split_pairs,
)
from conrec.evaluation.calibrated import LABELS as CALIBRATED_LABELS
from conrec.evaluation.cases import history_predictions, served_cases
from conrec.evaluation.decision import (
    BUDGETS,
    DecisionCase,
    PerUser,
    budget_label,
    judge,
    paired_difference,
)
from conrec.evaluation.list_metrics import TOPK_METRICS, topk_hits
from conrec.evaluation.results import paired_table
from conrec.evaluation.rows import BACKTEST_BASELINES
from conrec.evaluation.split import EvalSplit
from conrec.evaluation.tuning import GRIDS
from conrec.model.calibration import CalibrationSettings
from conrec.model.data.prepared import load_tables
from conrec.model.data.sources import DataTables
from conrec.model.data.splits import HORIZON_DAYS
from conrec.model.data.tables import DAY_SECONDS, Polarity

console = Console()
HISTORY_SET = "history_set"
LLM_ROW = "conrec"
KINDS = ("max_cosine", "own", "calibrated")


@dataclass
class BacktestConfig:
    config: str = field(
        default="model/configs/tiny-ml100k.yaml",
        metadata={"help": "Curriculum YAML of the LLM row (CoNRec).", "argument": True},
    )
    out: str = field(
        default="runs/backtest",
        metadata={"help": "Output directory (cache, models, results); a rerun reuses it."},
    )
    cutoffs: int = field(default=26, metadata={"help": "Weekly global cutoffs replayed.", "min": 2})
    every_days: float = field(
        default=7.0, metadata={"help": "Days between two cutoffs.", "min": 1.0}
    )
    baselines: tuple[str, ...] = field(
        default=BACKTEST_BASELINES, metadata={"help": "Baselines fitted at every cutoff."}
    )
    llm: bool = field(
        default=True, metadata={"help": "Replay the LLM row too (trained on the events up to T)."}
    )
    refit_every: int = field(
        default=4, metadata={"help": "Retrain the LLM at every k-th cutoff (k = this).", "min": 1}
    )
    engine: Engine = field(default="hf", metadata={"help": "Beam engine of the LLM row."})
    k: int = field(default=20, metadata={"help": "Predictions per user.", "min": 1})
    data: str | None = field(
        default=None, metadata={"help": "Prepared-tables folder; None: the config's."}
    )
    codebook_dir: str | None = field(
        default=None, metadata={"help": "A codebook artifact instead of the config's."}
    )

    def __post_init__(self) -> None:
        if unknown := [b for b in self.baselines if b not in GRIDS]:
            raise ValueError(f"unknown baselines {unknown}; choose from {list(GRIDS)}")


def backtest_cutoffs(events: pd.DataFrame, count: int, every_days: float) -> list[int]:
    """`count` cutoffs `every_days` apart, the last a horizon before the last event, none
    before the first event."""
    last = int(events["ts"].max()) - int(HORIZON_DAYS * DAY_SECONDS)
    step = int(every_days * DAY_SECONDS)
    first = int(events["ts"].min())
    return sorted(t for t in (last - i * step for i in range(count)) if t > first)


def active_users(events: pd.DataFrame, cutoff: int) -> pd.Series:
    """user_id -> cutoff for the users with an event up to it and a negative or positive in
    the horizon after it."""
    horizon = cutoff + int(HORIZON_DAYS * DAY_SECONDS)
    before = set(events.loc[events["ts"] <= cutoff, "user_id"])
    after = events[(events["ts"] > cutoff) & (events["ts"] <= horizon)]
    judged = set(after.loc[after["polarity"].isin([Polarity.NEG, Polarity.POS]), "user_id"])
    users = sorted(before & judged)
    return pd.Series(cutoff, index=pd.Index(users, name="user_id"), name="cutoff")


@dataclass
class Week:
    """One row at one cutoff: per-user list hits and decision cases by score kind."""

    cutoff: int
    hits: dict[str, np.ndarray]
    cases: dict[str, list[DecisionCase]]


def run_backtest(cfg: BacktestConfig, dataset: DataTables | None = None) -> dict:
    from conrec.model.train_config import load_config

    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(
        cfg.config, codebook_dir=cfg.codebook_dir, data=cfg.data, output_dir=str(out / "models")
    )
    data = dataset or load_tables(base.data)
    table = load_item_sids(base.codebook_dir)
    codebook = load_codebook(base.codebook_dir)
    catalogue = Catalogue.of(table, data.items)
    cutoffs = backtest_cutoffs(data.events, cfg.cutoffs, cfg.every_days)
    weeks: dict[str, list[Week]] = {}
    # Per calibrated row, each week's (user, future item) pairs with their features.
    pairs: dict[str, list[Pairs]] = {CALIBRATED_HISTORY: []} | ({CALIBRATED: []} if cfg.llm else {})
    settings = CalibrationSettings()
    model_dir = None
    for i, cutoff in enumerate(cutoffs):
        users = active_users(data.events, cutoff)
        split = EvalSplit.at(data.events, table, users, buckets=1)
        console.rule(f"cutoff {i + 1}/{len(cutoffs)} {_date(cutoff)}: {len(users)} users")
        folder = out / "rows" / str(cutoff)
        folder.mkdir(parents=True, exist_ok=True)
        for name in cfg.baselines:
            payload = _cached(
                folder / f"{name}.json",
                lambda n=name, s=split: _baseline(n, s, catalogue, cfg.k),
            )
            weeks.setdefault(name, []).append(_week(cutoff, payload, split, codebook, table))
        history = history_predictions(split.windows, table)
        weeks.setdefault(HISTORY_SET, []).append(
            _week(cutoff, {"predictions": history}, split, codebook, table, list_row=False)
        )
        pairs[CALIBRATED_HISTORY].append(split_pairs(split, table, codebook, history, settings))
        if cfg.llm:
            if i % cfg.refit_every == 0:
                model_dir = _train(base, data, cutoff, out)
            payload = _cached(
                folder / f"{LLM_ROW}.json",
                lambda d=model_dir, s=split: _llm(d, s, table, cfg),
            )
            weeks.setdefault(LLM_ROW, []).append(_week(cutoff, payload, split, codebook, table))
            predicted = {
                u: np.asarray(p, dtype=np.int64) for u, p in payload["predictions"].items()
            }
            pairs[CALIBRATED].append(split_pairs(split, table, codebook, predicted, settings))
    rows, per_user = {}, {}
    for name, found in weeks.items():
        rows[name], per_user[name] = summarize_weeks(found)
    for name, found in pairs.items():
        rows[name], per_user[name] = calibrated_weeks(cutoffs, found, settings)
    # The fit's own ablation, on the served set's pairs: one regression over every pair.
    shipped = CALIBRATED if cfg.llm else CALIBRATED_HISTORY
    pooled = dataclasses.replace(settings, fit="pooled")
    rows[CALIBRATED_POOLED], per_user[CALIBRATED_POOLED] = calibrated_weeks(
        cutoffs, pairs[shipped], pooled
    )
    results = {
        "cutoffs": [_date(t) for t in cutoffs],
        "every_days": cfg.every_days,
        "refit_every": cfg.refit_every if cfg.llm else None,
        "user_weeks": int(sum(len(w.cases["max_cosine"]) for w in weeks[HISTORY_SET])),
        "rows": rows,
        "paired": paired_calibrated(per_user),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "backtest.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "backtest.md").write_text(render_backtest(results))
    plot_backtest(results, out / "backtest.png")
    console.rule(f"[bold green]backtest written to {out / 'backtest.md'}")
    return results


def _date(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    payload = compute()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, default=float))
    tmp.replace(path)
    return payload


def _baseline(name: str, split: EvalSplit, catalogue: Catalogue, k: int) -> dict:
    from conrec.evaluation.tuning import baseline_outputs, make_baseline

    found = baseline_outputs(make_baseline(name, catalogue), split, catalogue, k)
    return {
        "predictions": {u: [list(map(int, s)) for s in p] for u, p in found.predictions.items()},
        "cases": [
            [c.user_id, c.negatives.tolist(), c.positives.tolist(), c.others.tolist()]
            for c in found.cases
        ],
    }


def _train(base, data: DataTables, cutoff: int, out: Path) -> str:
    from conrec.model.curriculum import run_curriculum

    model = out / "models" / str(cutoff)
    cfg = dataclasses.replace(
        base, cutoff=str(cutoff), output_dir=str(model), stages_dir=str(out / "stages")
    )
    return run_curriculum(cfg, data).final_model


def _llm(model_dir: str, split: EvalSplit, table: ItemSIDTable, cfg: BacktestConfig) -> dict:
    from conrec.evaluation.llm import LLMPredictor

    predictor = LLMPredictor(model_dir, table, cfg.engine)
    topk = predictor.topk(predictor.prompts(split), cfg.k)
    return {
        "predictions": {u: [list(map(int, s)) for s in p] for u, p in topk.items()},
        "model_dir": model_dir,
    }


def _week(
    cutoff: int,
    payload: dict,
    split: EvalSplit,
    codebook: Codebook,
    table: ItemSIDTable,
    list_row: bool = True,
) -> Week:
    predictions = {u: np.asarray(p, dtype=np.int64) for u, p in payload["predictions"].items()}
    cases = {"max_cosine": served_cases(split.windows, predictions, codebook, table)}
    if "cases" in payload:
        cases["own"] = [
            DecisionCase(u, *(np.asarray(x, dtype=np.float64) for x in (neg, pos, others)))
            for u, neg, pos, others in payload["cases"]
        ]
    topk = {u: [tuple(s) for s in p.tolist()] for u, p in predictions.items()}
    hits = topk_hits(split.users, topk) if list_row else {}
    return Week(cutoff, hits, cases)


def summarize_weeks(weeks: list[Week]) -> tuple[dict, dict[str, PerUser]]:
    """A row's figures pooled over user-weeks, decisions with the previous week's thresholds;
    and per score kind its figures per user-week."""
    out: dict = {}
    if weeks[0].hits:
        out["list"] = {
            m: float(np.nanmean(np.concatenate([w.hits[m] for w in weeks]))) for m in TOPK_METRICS
        }
    per_user = {}
    for kind in weeks[0].cases:
        out[kind], per_user[kind] = pooled_decision(
            [
                (now.cutoff, before.cases[kind], now.cases[kind])
                for before, now in itertools.pairwise(weeks)
            ]
        )
    return out, per_user


def calibrated_weeks(
    cutoffs: list[int], pairs: list[Pairs], settings
) -> tuple[dict, dict[str, PerUser]]:
    """The calibrated score replayed: each week's model fitted on every week before it (their
    pairs and their futures, all known by this week's cutoff), its thresholds chosen on the week
    just before, judged on this week's pairs."""
    judged = []
    for i in range(1, len(pairs)):
        cutoff, before, now = cutoffs[i], pairs[i - 1], pairs[i]
        model = fit_model(Pairs.concat(pairs[:i]), FULL, settings)
        judged.append(
            (cutoff, before.cases(score_pairs(model, before, FULL)),
             now.cases(score_pairs(model, now, FULL)))
        )  # fmt: skip
    figures, per_user = pooled_decision(judged)
    return {"calibrated": figures}, {"calibrated": per_user}


def paired_calibrated(per_user: dict[str, dict[str, PerUser]]) -> dict:
    """Each calibrated row minus every other row, on the same user-weeks: label -> label ->
    `paired_difference` (a 95% user-week bootstrap)."""
    out = {}
    for name in (CALIBRATED, CALIBRATED_HISTORY):
        if name in per_user:
            mine = per_user[name]["calibrated"]
            out[_label(name, "calibrated")] = {
                _label(other, kind): paired_difference(mine, theirs)
                for other, kinds in per_user.items()
                for kind, theirs in kinds.items()
                if other != name
            }
    return out


def pooled_decision(
    judged: list[tuple[int, list[DecisionCase], list[DecisionCase]]],
) -> tuple[dict, PerUser]:
    """(cutoff, cases the thresholds are chosen on, cases judged) per week -> the decision
    pooled over user-weeks (AUC the mean over them, caught and lost over their pairs), and its
    figures per user-week."""
    per_week, users = [], []
    pooled = {budget_label(b): [0.0, 0.0, 0.0, 0.0] for b in BUDGETS}
    for cutoff, chosen_on, cases in judged:
        result = judge(cases, chosen_on)
        users.append(result.per_user)
        negatives = sum(len(c.negatives) for c in cases)
        positives = sum(len(c.positives) for c in cases)
        for key, b in result.budgets.items():
            counts = pooled[key]
            counts[0] += b.caught * negatives
            counts[1] += negatives
            counts[2] += b.lost * positives
            counts[3] += positives
        per_week.append(
            {"cutoff": _date(cutoff), "auc": result.auc,
             "caught_at_10pct": result.budgets["10%"].caught}
        )  # fmt: skip
    per_user = PerUser.concat(users)
    return {
        "auc": per_user.mean_auc,
        "user_weeks": int(np.count_nonzero(~np.isnan(per_user.auc))),
        "budgets": {
            key: {"caught": c[0] / max(c[1], 1), "lost": c[2] / max(c[3], 1)}
            for key, c in pooled.items()
        },
        "weeks": per_week,
    }, per_user


def _label(name: str, kind: str) -> str:
    if kind == "calibrated":
        return CALIBRATED_LABELS[name]
    if name == HISTORY_SET:
        return "user's own last 20 negatives, max cosine (served)"
    shown = "CoNRec" if name == LLM_ROW else name
    return f"{shown}, {'own score' if kind == 'own' else 'max cosine to its top-20 (served)'}"


def render_backtest(results: dict) -> str:
    lines = [
        "# Backtest: the weekly pipeline replayed",
        "",
        f"{len(results['cutoffs'])} global cutoffs every {results['every_days']:g} days "
        f"({results['cutoffs'][0]} .. {results['cutoffs'][-1]}), {results['user_weeks']} "
        "user-weeks (users with an event before the cutoff and a negative or positive in the "
        "week after). Baselines refitted at every cutoff on the events before it"
        + (
            f"; the LLM retrained every {results['refit_every']} cutoffs (at the first, then "
            "every k-th), predicting from each user's history up to each cutoff"
            if results["refit_every"]
            else ""
        )
        + ". Decision thresholds from the previous week; the first week only calibrates. "
        f"{results['seconds'] / 60:.1f} min.",
        "",
        "| row | FHR@20 | LIF@20 | within-user AUC | caught at 10% lost | positives lost |",
        "|---|---|---|---|---|---|",
    ]
    entries = [
        (name, kind, row) for name, row in results["rows"].items() for kind in KINDS if kind in row
    ]
    for name, kind, row in sorted(entries, key=lambda e: -e[2][e[1]]["auc"]):
        figures = row.get("list", {})
        fhr = f"{figures['fhr']:.4f}" if figures and kind == "max_cosine" else "-"
        lif = f"{figures['lif']:.4f}" if figures and kind == "max_cosine" else "-"
        ten = row[kind]["budgets"]["10%"]
        lines.append(
            f"| {_label(name, kind)} | {fhr} | {lif} | {row[kind]['auc']:.3f} | "
            f"{ten['caught']:.3f} | {ten['lost']:.3f} |"
        )
    lines.append("")
    for label, against in results.get("paired", {}).items():
        lines += paired_table(
            f"Paired differences (user-week bootstrap, 95%), {label} minus each row:", against
        )
    lines.append("![backtest](backtest.png)")
    return "\n".join(lines) + "\n"


def plot_backtest(results: dict, path: Path) -> None:
    """Per week, negatives caught at 10% of positives lost (the previous week's threshold)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, row in results["rows"].items():
        for kind in KINDS:
            if kind in row and row[kind]["weeks"]:
                weeks = row[kind]["weeks"]
                ax.plot([w["cutoff"] for w in weeks], [w["caught_at_10pct"] for w in weeks],
                        marker="o", ms=3, label=_label(name, kind))  # fmt: skip
    ax.set(ylabel="future negatives caught at 10% positives lost", ylim=(0, 1),
           title="backtest: each week, thresholds from the week before")  # fmt: skip
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
