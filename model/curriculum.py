"""The CoNRec curriculum: translation, alignment and warm-up SFT, then progressive GRPO.

Stages run in the order `conrec.model.stage_plan` gives, each in
`<stages_dir>/<label>-<fingerprint>/` and resumable: a finished stage is reused (by any run whose
config agrees up to it), an unfinished one resumes from its newest checkpoint. When a stage finishes
its model is measured once (alignment accuracy; for warm-up and GRPO stages also the reward of
greedy outputs on held-out windows) and the figures are kept with it.

GRPO stages train on disjoint subsets of the training windows (`tasks.stage_subsets`); the
`recent` stage keeps only windows with negatives in the last `recent_days`. Before each GRPO
stage, the previous stage's model runs the paper's data step over that stage's samples
(`CleaningSettings`).

The final merged model and its tokenizer go to `<output_dir>/model/` (loadable by
`AutoModelForCausalLM.from_pretrained` and by vLLM), with `conrec_prompt.json` (the
`next_negative_prompt` arguments the batch job must use) and `conrec_backbone.json` (where the
weights came from). `<output_dir>/summary.json` holds each stage's metrics and measurements,
and `<output_dir>/grpo.png` plots the GRPO reward and KL per step.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from conrec.codebook.artifact import load_codebook, load_item_sids
from conrec.model import distributed, tasks
from conrec.model.backbone import (
    build_tiny_model,
    build_tokenizer,
    load_backbone,
    load_backbone_tokenizer,
)
from conrec.model.constrained import build_sid_trie
from conrec.model.data.prepared import load_tables
from conrec.model.data.sources import DataTables
from conrec.model.data.splits import cutoffs_for, training_cutoffs, user_windows
from conrec.model.data.tables import Polarity, item_texts
from conrec.model.grpo import run_grpo_stage
from conrec.model.likelihood import alignment_accuracy, generate_sids
from conrec.model.plots import plot_grpo
from conrec.model.pretrained import PROVENANCE_FILE, hf_checkpoint
from conrec.model.prompts import next_negative_prompter, prompt_vocabulary, save_prompt_config
from conrec.model.rewards import make_reward, make_valid_sid_reward, output_sid, set_similarity
from conrec.model.sft import run_sft_stage
from conrec.model.stage_plan import PlannedStage, base_fingerprint, plan_stages
from conrec.model.stages import DONE_MARKER, is_done, load_finished
from conrec.model.swing import neighbours, swing_scores
from conrec.model.train_config import CurriculumConfig

FINAL_MODEL_DIR = "model"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "grpo.png"
EVALS_FILE = "evals.json"
FINAL_MARKER = "conrec_stage.json"


def data_version(events: pd.DataFrame) -> str:
    """A content hash of the events table, so stages trained on other data are never reused."""
    digest = pd.util.hash_pandas_object(events, index=False).to_numpy()
    return f"{len(events)}-{int(np.bitwise_xor.reduce(digest)):016x}"


@dataclass
class CurriculumSummary:
    """What a curriculum run leaves in its summary.json and returns."""

    backbone: dict  # where the pretrained weights came from (`conrec.model.pretrained`)
    alignment_rule: str
    stages: dict[str, dict]  # stage label -> its training metrics (and `log`) and folder
    stage_evals: dict[str, dict]  # stage label -> what was measured after it
    eval: dict  # the headline figures
    final_model: str  # the folder the batch job loads

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, default=float))

    @classmethod
    def read(cls, path: Path) -> CurriculumSummary:
        return cls(**json.loads(path.read_text()))


def run_curriculum(cfg: CurriculumConfig, dataset: DataTables | None = None) -> CurriculumSummary:
    """Run (or resume) every stage of `cfg`; return and write the summary.

    Under a launcher this is the leader's call: the followers (`conrec.model.distributed`) receive
    the job and train every stage with it, data-parallel.
    """
    distributed.lead((cfg, dataset))
    return train_curriculum(cfg, dataset)


def train_curriculum(cfg: CurriculumConfig, dataset: DataTables | None = None) -> CurriculumSummary:
    """`run_curriculum` on every rank: all ranks train each stage together; the leader alone
    writes stage directories, measurements, the summary, the plot and the final model, while
    the others wait at barriers. Returns the summary on every rank."""
    out = Path(cfg.output_dir)
    if distributed.is_leader() and (note := distributed.unsharded_on_cpu()):
        print(f"note: {note}", flush=True)
    with distributed.leader_first():  # a dataset fetched on first use is fetched once
        out.mkdir(parents=True, exist_ok=True)
        dataset = dataset or load_tables(cfg.data)
    run = CurriculumRun(cfg, dataset)
    stages = run.stages
    done = [is_done(run.dir(s)) for s in stages]
    resume_at = next((i for i, d in enumerate(done) if not d), len(stages))
    model = load_finished(run.dir(stages[resume_at - 1]))[0] if resume_at else run.initial_model()
    metrics_by_stage: dict[str, dict] = {}
    evals: dict[str, dict] = {}
    for i, stage in enumerate(stages):
        if i < resume_at:
            metrics = json.loads((run.dir(stage) / "merged" / DONE_MARKER).read_text())
        else:
            model, metrics = run.train(stage, model)
        metrics_by_stage[stage.label] = {**metrics, "dir": str(run.dir(stage))}
        if distributed.is_leader():
            # A finished stage's model is loaded again only if its figures were never taken.
            evals[stage.label] = run.stage_evals(stage, model if i >= resume_at - 1 else None)
    if distributed.is_leader():
        final = out / FINAL_MODEL_DIR
        _save_final(final, model, run, stages[-1])
        CurriculumSummary(
            backbone=run.provenance,
            alignment_rule=run.align_rule,
            stages=metrics_by_stage,
            stage_evals=evals,
            eval=_headline(stages, evals, metrics_by_stage, run),
            final_model=str(final),
        ).write(out / SUMMARY_FILE)
        plot_grpo(metrics_by_stage, out / PLOT_FILE)
    distributed.barrier()
    # Every rank returns what the leader wrote (JSON's float forms included).
    return CurriculumSummary.read(out / SUMMARY_FILE)


class CurriculumRun:
    """One curriculum run's inputs (data windows, samples, tokenizer, trie, rewards) and how it
    trains and measures each planned stage."""

    def __init__(self, cfg: CurriculumConfig, data: DataTables):
        self.cfg = cfg
        self.items = data.items
        self.codebook = load_codebook(cfg.codebook_dir)
        self.item_sids = load_item_sids(cfg.codebook_dir)
        version = data_version(data.events)
        self.stages = plan_stages(cfg, self.codebook.version, version)
        self.root = Path(cfg.stages_dir) if cfg.stages_dir else Path(cfg.output_dir) / "stages"
        self.prompt_settings = asdict(cfg.prompt)

        events = data.events
        eval_cutoffs = cutoffs_for(events, cfg.cutoff)
        train_cutoffs = training_cutoffs(events, eval_cutoffs, cfg.max_per_user)
        if cfg.max_train_windows and len(train_cutoffs) > cfg.max_train_windows:
            train_cutoffs = train_cutoffs.sample(cfg.max_train_windows, random_state=cfg.seed)
            train_cutoffs = train_cutoffs.sort_index()
        self.windows = list(user_windows(events, train_cutoffs))
        # Swing and alignment see only events up to each user's eval cutoff (no eval leakage).
        seen = events[events["ts"] <= events["user_id"].map(eval_cutoffs)]
        self.swing = neighbours(swing_scores(seen[seen["polarity"] == Polarity.NEG], cfg.swing))
        align_all, self.align_rule = tasks.alignment_samples(
            seen, self.item_sids, cfg.alignment, seed=cfg.seed
        )
        self.align_train, align_eval = tasks.split_by_user(align_all, cfg.eval_fraction)
        if cfg.use_alignment and not self.align_train:
            a = cfg.alignment
            raise ValueError(
                "no item-level alignment question can be asked of this data (an answer needs a "
                f"negative repeated more than {a.min_user_occurrences} times by its user, or, "
                f"where none is, more than {a.min_item_negatives} negatives across users, and "
                "three positives of the same user): lower alignment.min_item_negatives or "
                "alignment.min_user_occurrences, or set use_alignment: false"
            )
        self.align_eval = align_eval[: cfg.eval_samples]
        tok_dir = self.root / f"tokenizer-{base_fingerprint(cfg, self.codebook.version, version)}"
        self.tokenizer, self.provenance = self._tokenizer(tok_dir)
        self.prompt = next_negative_prompter(self.tokenizer, **self.prompt_settings)
        self.grpo_eval = tasks.grpo_samples(
            user_windows(events, eval_cutoffs), self.item_sids, self.swing, "full",
            cfg.reward.swing_per_item, prompt=self.prompt,
        )[: cfg.eval_samples]  # fmt: skip
        self.trie = build_sid_trie(self.item_sids.codes, self.tokenizer)
        r = cfg.reward
        self.reward = make_reward(
            self.codebook, r.scheme, gamma=r.gamma, threshold=r.threshold,
            invalid_reward=r.invalid_reward,
        )  # fmt: skip
        # GRPO's reward functions and weights; weight 0 is logged, not trained on.
        self.rewards: list[tuple[Callable, float]] = [
            (self.reward, 1.0), (make_valid_sid_reward(self.codebook), 0.0),
        ]  # fmt: skip

    def dir(self, stage: PlannedStage) -> Path:
        return self.root / stage.dirname

    def _tokenizer(self, tok_dir: Path):
        """(tokenizer, provenance). The tiny tokenizer is built once and saved, so every run
        sharing its stages shares its vocabulary."""
        levels, size = self.codebook.levels, self.codebook.size
        if self.cfg.backbone:
            self.backbone_dir, provenance = hf_checkpoint(self.cfg.backbone)
            return load_backbone_tokenizer(self.backbone_dir, levels, size), provenance
        from transformers import AutoTokenizer

        with distributed.leader_first():  # every rank trains with the leader's vocabulary
            if tok_dir.is_dir():
                tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
            else:
                corpus = item_texts(self.items) + prompt_vocabulary()
                tokenizer = build_tokenizer(corpus, levels, size)
                tokenizer.save_pretrained(tok_dir)
        return tokenizer, {"source": "tiny", "format": "config", **asdict(self.cfg.tiny)}

    def initial_model(self):
        """The backbone before any stage (built only when the first stage has to run)."""
        if self.cfg.backbone:
            return load_backbone(self.backbone_dir, self.tokenizer)
        return build_tiny_model(self.tokenizer, self.cfg.tiny, seed=self.cfg.seed)

    def train(self, stage: PlannedStage, model):
        """Train `stage` on top of `model`; returns (merged model, metrics)."""
        if distributed.is_leader():
            print(f"== stage {stage.label} -> {self.dir(stage)}", flush=True)
        samples, data_step = self.samples(stage, model)
        before = self.stages[stage.index - 2] if stage.index > 1 else None

        def base():  # the stage's starting model, whole (read only when training sharded it)
            return load_finished(self.dir(before))[0] if before else self.initial_model()

        if stage.kind == "sft":
            return run_sft_stage(
                model, self.tokenizer, samples, self.dir(stage), stage.config, self.cfg.lora,
                seed=self.cfg.seed, base=base, precision=self.cfg.precision,
            )  # fmt: skip
        funcs, weights = zip(*self.rewards, strict=True)
        model, metrics = run_grpo_stage(
            model, self.tokenizer, samples, self.dir(stage), stage.config, self.cfg.lora,
            list(funcs), list(weights), self.trie,
            seed=self.cfg.seed, extra_metrics={"data_step": data_step}, base=base,
            precision=self.cfg.precision,
        )  # fmt: skip
        return model, metrics

    def samples(self, stage: PlannedStage, model) -> tuple[Iterable[dict], dict]:
        """The stage's training samples (a stream for translation, whose size is the
        catalogue's) and, for GRPO, what the data step did."""
        cfg = self.cfg
        if stage.name == "translation":
            return tasks.translation_samples(self.items, self.item_sids), {}
        if stage.name == "alignment":
            return self.align_train, {}
        if stage.name == "warmup":
            return tasks.next_negative_samples(
                self.windows, self.item_sids, cfg.warmup_context, prompt=self.prompt
            ), {}
        position = stage.index - (len(self.stages) - len(cfg.grpo)) - 1
        pool = tasks.stage_subsets(self.windows, len(cfg.grpo), salt=str(cfg.seed))[position]
        if stage.config.context == "recent":
            pool = [w for w in pool if w.recent_negatives(cfg.prompt.recent_days)]
        samples = tasks.grpo_samples(
            pool, self.item_sids, self.swing, stage.config.context, cfg.reward.swing_per_item,
            cfg.reward.ground_truth, prompt=self.prompt,
        )  # fmt: skip
        random.Random(f"{cfg.seed}:{stage.label}").shuffle(samples)
        samples = samples[: stage.config.max_steps * stage.config.prompts_per_step]
        if not cfg.cleaning.enabled:
            return samples, {"enabled": False}
        flagged, by_rank = self._close_to_positives(model, samples)
        return tasks.oversample(samples, flagged, cfg.cleaning.factor), {
            "enabled": True,
            "checked": len(samples),
            "checked_by_rank": by_rank,
            "flagged": int(sum(flagged)),
            "tau": cfg.cleaning.tau,
            "factor": cfg.cleaning.factor,
        }

    def _close_to_positives(self, model, samples: list[dict]) -> tuple[list[bool], list[int]]:
        """Whether each sample's greedy output is within cosine tau of a future positive, and
        how many samples each rank checked (the ranks split the samples between them)."""
        mine = [samples[i] for i in distributed.shard(samples)]
        prompts = [s["prompt"] for s in mine]
        texts = generate_sids(model, self.tokenizer, prompts, self.trie, self.trie.depth + 1)
        flags = []
        for text, sample in zip(texts, mine, strict=True):
            sid = output_sid(text, self.codebook)
            similarity = set_similarity(self.codebook, sid, sample["future_pos_sids"]) if sid else 0
            flags.append(similarity > self.cfg.cleaning.tau)
        return distributed.gather_sharded(flags, len(samples))

    def stage_evals(self, stage: PlannedStage, model) -> dict:
        """The stage model's alignment accuracy (and held-out reward for warm-up and GRPO),
        measured once when the stage finishes and kept in its directory."""
        path = self.dir(stage) / EVALS_FILE
        if path.is_file():
            return json.loads(path.read_text())
        if model is None:
            model, _ = load_finished(self.dir(stage))
        result = {"alignment_acc": alignment_accuracy(model, self.tokenizer, self.align_eval)}
        if stage.name == "warmup" or stage.kind == "grpo":
            result["generation"] = self.generation_eval(model)
        path.write_text(json.dumps(result, indent=2))
        return result

    def generation_eval(self, model) -> dict:
        """Greedy outputs on held-out windows: reward, valid-SID rate with and without the trie."""
        samples = self.grpo_eval
        if not samples:
            return {}
        start = time.perf_counter()
        prompts = [s["prompt"] for s in samples]
        columns = {
            "gt_sids": [s["gt_sids"] for s in samples],
            "future_pos_sids": [s["future_pos_sids"] for s in samples],
        }
        valid = make_valid_sid_reward(self.codebook)
        result = {}
        for label, constraint in (("constrained", self.trie), ("free", None)):
            texts = generate_sids(model, self.tokenizer, prompts, constraint, self.trie.depth + 1)
            result[label] = {
                "reward_mean": float(np.mean(self.reward(prompts, texts, **columns))),
                "valid_sid_rate": float(np.mean(valid(prompts, texts))),
            }
        result["seconds"] = time.perf_counter() - start
        return result


def _headline(stages: list[PlannedStage], evals: dict, metrics: dict, run: CurriculumRun) -> dict:
    """The figures a reader looks for first, from the per-stage measurements."""
    by_name = {s.name: s.label for s in stages}
    final = stages[-1].label
    warmup = evals[by_name["warmup"]]
    out = {
        "alignment_acc_before_grpo": warmup["alignment_acc"],
        "alignment_acc_final": evals[final]["alignment_acc"],
        "before_grpo": warmup.get("generation", {}),
        "alignment_eval_samples": len(run.align_eval),
        "reward_eval_samples": len(run.grpo_eval),
    }
    if "alignment" in by_name:
        aligned = evals[by_name["alignment"]]["alignment_acc"]
        out["alignment_acc_after_alignment"] = aligned
        out["forgetting_rate"] = (
            (aligned - out["alignment_acc_final"]) / aligned if aligned else float("nan")
        )
    if stages[-1].kind == "grpo":
        out["after_grpo"] = evals[final]["generation"]
        last_log = metrics[final]["log"][-3:]
        out["final_train_reward"] = float(np.mean([e["reward"] for e in last_log]))
    return out


def _save_final(final: Path, model, run: CurriculumRun, last: PlannedStage) -> None:
    """The last stage's model as `<output_dir>/model`, with what the batch job needs beside it;
    skipped when it already holds that stage."""
    marker = final / FINAL_MARKER
    if marker.is_file() and json.loads(marker.read_text())["fingerprint"] == last.fingerprint:
        return
    if model is None:
        model, _ = load_finished(run.dir(last))
    model.save_pretrained(final)
    run.tokenizer.save_pretrained(final)
    cfg = run.cfg
    # The batch job must prompt exactly as the last stage did.
    context = cfg.grpo[-1].context if cfg.grpo else cfg.warmup_context
    save_prompt_config(final, context=context, **run.prompt_settings)
    (final / PROVENANCE_FILE).write_text(json.dumps(run.provenance, indent=2))
    marker.write_text(json.dumps({"stage": last.label, "fingerprint": last.fingerprint}))
