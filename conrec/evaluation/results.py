"""The evaluation's outputs: results.json, results.md and the PNG plots.

Every figure is a mean over the row's seeds with the standard deviation across seeds; the
headline ratio (CoNRec / best other row on FHR@20) comes with a 95% user-bootstrap interval on
per-user hits averaged over seeds. The threshold sweep scores CoNRec's seed-0 predictions the
way the service does (`conrec.report`), with the category blocker's point on the same users.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codebook.artifact import ItemSIDTable, load_codebook
from codebook.figures import pyplot
from conrec.evaluation.rows import (
    ABLATION,
    BASELINES,
    COMPARISON,
    FORGETTING,
    LLM_ROWS,
    REWARD_SCHEMES,
)
from conrec.report import operators_report
from model.evaluation.metrics import CANDIDATE_METRIC, TOPK_METRICS, bootstrap_interval
from model.evaluation.split import EvalSplit
from model.evaluation.tuning import GRID_MEANING
from model.pretrained import SMOLLM2

METRICS = (*TOPK_METRICS, CANDIDATE_METRIC)
LABELS = {
    "hr": "HR@20",
    "fhr": "FHR@20",
    "luf": "LUF@20",
    "lif": "LIF@20",
    CANDIDATE_METRIC: "Cand. Acc.",
}
# Rows that are not CoNRec: the "best baseline" is the best of these (SFT-only rows included).
NON_CONREC = (*BASELINES, "sft_neg", "sft_negpos")


def write_results(runs, split: EvalSplit, out: Path, *, cfg, data, table, seconds, machine) -> dict:
    """Aggregate `runs` (a list of `RowRun`) and write results.json, results.md and plots."""
    rows = _aggregate(runs)
    results = {
        "split": cfg.split,
        "populations": split.populations(),
        "config": cfg.config,
        "backbone": _backbone_name(cfg.config),
        "seeds": cfg.seeds,
        "engine": cfg.engine,
        "rows": rows,
        "seconds": round(seconds, 1),
        "machine": machine,
    }
    results["headline"] = _headline(runs, rows, results["backbone"])
    results["sweep"] = _sweep(runs, split, data, table, cfg, out)
    results["forgetting"] = _forgetting(rows)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.md").write_text(render_markdown(results))
    plot_metrics(rows, out / "metrics.png")
    return results


def _backbone_name(config_path: str) -> str:
    from model.train_config import load_config

    backbone = load_config(config_path).backbone
    return "tiny" if backbone is None else "smollm2" if backbone == SMOLLM2 else str(backbone)


def _aggregate(runs) -> dict:
    rows: dict[str, dict] = {}
    for run in runs:
        row = rows.setdefault(
            run.key,
            {
                "label": LLM_ROWS[run.key].label if run.key in LLM_ROWS else run.key,
                "kind": run.info.get("kind", "llm"),
                "seeds": [],
                "per_seed": {m: [] for m in METRICS},
                "info": [],
            },
        )
        row["seeds"].append(run.seed)
        row["info"].append(run.info)
        for m in METRICS:
            values = run.hits[m]
            row["per_seed"][m].append(float(np.nanmean(values)) if len(values) else float("nan"))
    for row in rows.values():
        row["metrics"] = {
            m: {
                "mean": float(np.mean(v)),
                "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            }
            for m, v in row["per_seed"].items()
        }
    return rows


def _per_user(runs, key: str, metric: str) -> np.ndarray:
    """Each user's hit averaged over the row's seeds (NaN outside the population)."""
    return np.mean([r.hits[metric] for r in runs if r.key == key], axis=0)


def _headline(runs, rows: dict, backbone: str) -> dict:
    others = [k for k in NON_CONREC if k in rows]
    if not others:
        return {}
    best = max(others, key=lambda k: rows[k]["metrics"]["fhr"]["mean"])
    out = {
        "best_baseline": best,
        "best_baseline_fhr20": rows[best]["metrics"]["fhr"]["mean"],
    }
    if "conrec" in rows:
        fhr = rows["conrec"]["metrics"]["fhr"]["mean"]
        lo, hi = bootstrap_interval(_per_user(runs, "conrec", "fhr"), _per_user(runs, best, "fhr"))
        out.update(
            conrec_fhr20=fhr,
            **{f"conrec_{backbone}_fhr20": fhr},
            fhr_ratio=fhr / out["best_baseline_fhr20"],
            fhr_ratio_ci95=[lo, hi],
        )
        best_lif = max(others, key=lambda k: rows[k]["metrics"]["lif"]["mean"])
        out.update(
            best_baseline_lif=best_lif,
            lif_ratio=rows["conrec"]["metrics"]["lif"]["mean"]
            / rows[best_lif]["metrics"]["lif"]["mean"],
        )
    return out


def _sweep(runs, split: EvalSplit, data, table: ItemSIDTable, cfg, out: Path) -> dict:
    """CoNRec's threshold sweep against the category blocker, on the report's population."""
    run = next((r for r in runs if r.key == "conrec" and r.seed == 0), None)
    if run is None:
        return {}
    from model.train_config import load_config

    codebook_dir = cfg.codebook_dir or load_config(cfg.config).codebook_dir
    payload = json.loads((out / "rows" / "conrec-s0.json").read_text())
    predictions = {u: np.asarray(s, dtype=np.int64) for u, s in payload["predictions"].items()}
    return operators_report(
        split.windows, predictions, load_codebook(codebook_dir), table, data.items, out
    )


def _forgetting(rows: dict) -> list[dict]:
    """Paper table 3: alignment accuracy after alignment SFT, and what each later training
    kept of it."""
    out = []
    for label, key in FORGETTING:
        if key not in rows:
            continue
        evals = [info.get("train", {}).get("eval") or {} for info in rows[key]["info"]]
        evals = [e for e in evals if "alignment_acc_after_alignment" in e]
        if not evals:
            continue
        out.append(
            {
                "task": label,
                "row": key,
                "after_alignment": float(
                    np.mean([e["alignment_acc_after_alignment"] for e in evals])
                ),
                "final": float(np.mean([e["alignment_acc_final"] for e in evals])),
                "forgetting_rate": float(np.mean([e["forgetting_rate"] for e in evals])),
            }
        )
    return out


def _cell(metric: dict, seeds: int) -> str:
    if seeds > 1:
        return f"{metric['mean']:.4f} ± {metric['std']:.4f}"
    return f"{metric['mean']:.4f}"


def _table(rows: dict, keys: Sequence[str], labels: Sequence[str] | None = None) -> list[str]:
    """A Markdown table of `keys` (those that ran), labelled by `labels` or the rows' labels."""
    first = "row" if labels is None else "scheme"
    lines = [
        f"| {first} | " + " | ".join(LABELS[m] for m in METRICS) + " | seeds |",
        "|---" * (len(METRICS) + 2) + "|",
    ]
    for i, key in enumerate(keys):
        if key not in rows:
            continue
        row = rows[key]
        label = row["label"] if labels is None else labels[i]
        cells = [_cell(row["metrics"][m], len(row["seeds"])) for m in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
    return lines


def _machine_text(machine: dict) -> str:
    return f"{machine['cpus']} CPUs ({machine['processor']}, GPU: {machine['gpu'] or 'none'})"


def _llm_machines(rows: dict) -> str:
    """Where the LLM rows ran: cached rows may come from other machines."""
    machines = {
        _machine_text(info["machine"]) if "machine" in info else "an unrecorded machine": None
        for row in rows.values()
        for info in row["info"]
        if info.get("kind") == "llm"
    }
    return ", ".join(machines) or "no machine (no LLM rows)"


def render_markdown(results: dict) -> str:
    rows, pops, head = results["rows"], results["populations"], results["headline"]
    lines = [
        f"# Evaluation: {results['backbone']} backbone, {results['split']} split",
        "",
        f"Config `{results['config']}`, {results['seeds']} seed(s) for CoNRec, SFT-only and "
        f"stochastic baselines (1 for the other rows), beam engine `{results['engine']}`; "
        f"{results['seconds'] / 60:.1f} min on {_machine_text(results['machine'])}; LLM rows "
        f"trained and predicted on {_llm_machines(rows)}.",
        "",
        "Populations (users): "
        + ", ".join(f"{LABELS.get(k, k)} {v}" for k, v in pops.items())
        + ". Mean ± standard deviation over seeds.",
        "",
        "## Comparison (paper table 1)",
        "",
        *_table(rows, [*BASELINES, *COMPARISON]),
        "",
        "## Ablation (paper table 2: each row adds one module)",
        "",
        *_table(rows, ABLATION),
        "",
        "## Reward schemes (paper table 4)",
        "",
        *_table(rows, list(REWARD_SCHEMES.values()), [f"({s})" for s in REWARD_SCHEMES]),
        "",
    ]
    if results["forgetting"]:
        lines += [
            "## Forgetting of the alignment task (paper table 3)",
            "",
            "| trained after alignment | accuracy after alignment | final | forgetting rate |",
            "|---|---|---|---|",
            *(
                f"| {f['task']} | {f['after_alignment']:.3f} | {f['final']:.3f} | "
                f"{100 * f['forgetting_rate']:.1f}% |"
                for f in results["forgetting"]
            ),
            "",
        ]
    tuning = [
        f"- {key}: {GRID_MEANING[key]} = {rows[key]['info'][0]['choice']} (validation FHR@20 "
        + ", ".join(
            f"{c}: {v:.4f}" for c, v in rows[key]["info"][0]["tuning"]["validation_fhr"].items()
        )
        + ")"
        for key in GRID_MEANING
        if key in rows
    ]
    if tuning:
        lines += ["## Baseline tuning (validation cutoff)", "", *tuning, ""]
    if results["sweep"]:
        sweep = results["sweep"]
        lines += [
            "## Threshold sweep",
            "",
            f"CoNRec (seed 0) on {sweep['users']} users with a future negative or positive: at "
            f"the category blocker's positives-lost rate ({sweep['blocker']['positives_lost']:.3f})"
            f" it catches {sweep['caught_at_blocker_loss']:.3f} of future negatives; the blocker "
            f"catches {sweep['blocker']['negatives_caught']:.3f}. Table and plot: "
            "[filter_report.md](filter_report.md).",
            "",
            "![sweep](filter_report.png) ![metrics](metrics.png)",
            "",
        ]
    if head:
        lines += ["## Headline", ""]
        if "conrec_fhr20" in head:
            lo, hi = head["fhr_ratio_ci95"]
            lines += [
                f"CoNRec FHR@20 / best other row ({head['best_baseline']}) = "
                f"{head['fhr_ratio']:.3f} (95% user bootstrap {lo:.3f} - {hi:.3f}); LIF@20 ratio "
                f"to {head['best_baseline_lif']}: {head['lif_ratio']:.3f}.",
                "",
            ]
        lines += [f"{k}: {v:.4f}" for k, v in head.items() if k.endswith("fhr20")]
        lines += [f"seeds: {results['seeds']}"]
    return "\n".join(lines) + "\n"


def plot_metrics(rows: dict, path: Path) -> None:
    """Each metric per row, mean with the seed standard deviation as an error bar."""
    plt = pyplot()

    groups = [("comparison", [*BASELINES, *COMPARISON]), ("ablation", list(ABLATION))]
    groups = [(title, [k for k in keys if k in rows]) for title, keys in groups]
    groups = [(title, keys) for title, keys in groups if keys]
    if not groups:
        return
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 4 * len(groups)), squeeze=False)
    width = 0.8 / len(METRICS)
    for ax, (title, keys) in zip(axes[:, 0], groups, strict=True):
        x = np.arange(len(keys))
        for i, m in enumerate(METRICS):
            means = [rows[k]["metrics"][m]["mean"] for k in keys]
            stds = [rows[k]["metrics"][m]["std"] for k in keys]
            ax.bar(x + i * width, means, width, yerr=stds, capsize=2, label=LABELS[m])
        ax.set_xticks(x + width * (len(METRICS) - 1) / 2)
        ax.set_xticklabels([rows[k]["label"] for k in keys], rotation=20, ha="right", fontsize=8)
        ax.set(title=title, ylabel="metric (mean ± std over seeds)")
        ax.legend(fontsize=7, ncol=len(METRICS))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
