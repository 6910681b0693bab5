import dataclasses

import pytest
import torch

from conrec.model import tasks
from conrec.model.sft import SFTStageConfig, run_sft_stage, sft_collator
from conrec.model.stage_data import IGNORE_INDEX, encode_sample
from conrec.model.stages import LoraSettings, is_done, load_finished, resume_checkpoint
from tests.model.conftest import changed_parameters, make_tiny_model, snapshot

STEPS = SFTStageConfig(max_steps=3, batch_size=4, save_steps=3, max_length=64)


def test_encode_sample_masks_the_prompt(tokenizer):
    enc = encode_sample(tokenizer, "The item titled toy story is:", "<a_1><b_2><c_3>", 64)
    n_prompt = len(tokenizer("The item titled toy story is:")["input_ids"])
    assert enc["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert enc["input_ids"][-1] == tokenizer.eos_token_id
    assert len(enc["labels"][n_prompt:]) == 4  # three SID tokens + EOS
    short = encode_sample(
        tokenizer, "Not interested: " + "<a_1><b_2><c_3>" * 30, "<a_0><b_0><c_0>", 16
    )
    assert len(short["input_ids"]) == 16  # the oldest prompt tokens are cut
    assert short["labels"][-4:] == short["input_ids"][-4:]


def _stage_samples(kind, ml100k, item_sids, windows):
    if kind == "translation":
        return list(tasks.translation_samples(ml100k.items.head(20), item_sids))
    if kind == "alignment":
        return tasks.alignment_samples(ml100k.events, item_sids)[0][:20]
    return tasks.next_negative_samples(windows, item_sids)[:20]


@pytest.mark.parametrize("kind", ["translation", "alignment", "warmup"])
def test_sft_stage_trains_lora_and_checkpoints(
    kind, tmp_path, tiny_model, tokenizer, ml100k, item_sids, windows
):
    samples = _stage_samples(kind, ml100k, item_sids, windows)
    assert samples
    before = snapshot(tiny_model)
    merged, metrics = run_sft_stage(
        tiny_model, tokenizer, samples, tmp_path, STEPS, LoraSettings(r=4, alpha=8)
    )
    assert metrics["steps"] == 3
    changed = changed_parameters(before, merged)
    assert any("q_proj" in k for k in changed)  # merged LoRA deltas
    assert "model.embed_tokens.weight" in changed  # SID embedding rows are trained
    assert resume_checkpoint(tmp_path) is not None
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert is_done(tmp_path)
    reloaded, saved = load_finished(tmp_path)
    assert saved["steps"] == 3
    assert not changed_parameters(snapshot(merged), reloaded)


def test_sft_stage_resumes_from_its_checkpoint(tmp_path, tokenizer, item_sids, ml100k, tiny_model):
    samples = tasks.translation_samples(ml100k.items.head(20), item_sids)
    cfg = SFTStageConfig(max_steps=2, batch_size=4, save_steps=2, max_length=64)
    run_sft_stage(tiny_model, tokenizer, samples, tmp_path, cfg, LoraSettings(r=4, alpha=8))
    longer = SFTStageConfig(max_steps=4, batch_size=4, save_steps=2, max_length=64)
    _, metrics = run_sft_stage(
        make_tiny_model(tokenizer), tokenizer, samples, tmp_path, longer, LoraSettings(r=4, alpha=8)
    )
    assert metrics["steps"] == 4
    assert resume_checkpoint(tmp_path).endswith("checkpoint-4")


def test_bf16_precision_trains_under_autocast_on_a_cpu(tmp_path, tokenizer, item_sids, ml100k):
    samples = list(tasks.translation_samples(ml100k.items.head(20), item_sids))
    losses = {}
    for precision in ("auto", "bf16"):
        merged, metrics = run_sft_stage(
            make_tiny_model(tokenizer), tokenizer, samples, tmp_path / precision, STEPS,
            LoraSettings(r=4, alpha=8), precision=precision,
        )  # fmt: skip
        losses[metrics["precision"]] = metrics["train_loss"]
        assert next(merged.parameters()).dtype == torch.float32  # autocast keeps fp32 weights
    # auto is fp32 on a CPU; bf16 rounds the matmuls, so the same seed's loss moves a little
    assert set(losses) == {"fp32", "bf16"}
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_sid_rows_of_an_untied_lm_head_train_too(tmp_path, tokenizer, ml100k, item_sids):
    from conrec.model.backbone import TinyBackboneConfig, build_tiny_model

    cfg = TinyBackboneConfig(hidden_size=32, intermediate_size=64, head_dim=8)
    untied = build_tiny_model(tokenizer, dataclasses.replace(cfg, tie_word_embeddings=False))
    before = snapshot(untied)
    samples = tasks.translation_samples(ml100k.items.head(20), item_sids)
    merged, _ = run_sft_stage(untied, tokenizer, samples, tmp_path, STEPS, LoraSettings(r=4))
    changed = changed_parameters(before, merged)
    assert "model.embed_tokens.weight" in changed
    assert "lm_head.weight" in changed
    sid_rows = [tokenizer.convert_tokens_to_ids(t) for t in ("<a_1>", "<c_7>")]
    word_row = tokenizer.convert_tokens_to_ids("item")
    head_before, head_after = before["lm_head.weight"], merged.state_dict()["lm_head.weight"]
    assert not torch.equal(head_before[sid_rows], head_after[sid_rows])
    assert torch.equal(head_before[word_row], head_after[word_row])  # only SID rows train


def test_completion_targets_start_with_a_token_the_trie_allows(tokenizer, trie):
    enc = encode_sample(tokenizer, "The item titled toy story is:", "<a_1><b_2><c_3>", 64)
    targets = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert targets[:3] == list(tokenizer.convert_tokens_to_ids(["<a_1>", "<b_2>", "<c_3>"]))
    assert targets[-1] == tokenizer.eos_token_id
    assert targets[0] in trie.allowed(())


def test_stage_rows_are_tokenised_once_in_chunks_as_one_sample_would_be(tmp_path, tokenizer):
    from conrec.model.stage_data import ROWS_FILE, tokenised_rows, write_rows

    samples = [
        {"prompt": f"The item titled toy story {n} is:", "completion": "<a_1><b_2><c_3>"}
        for n in range(5)
    ] + [{"prompt": "Not interested: " + "toy story, " * 40, "completion": "<a_2><b_1><c_7>"}]
    rows = tokenised_rows(iter(samples), tokenizer, 24, tmp_path)
    expected = [encode_sample(tokenizer, s["prompt"], s["completion"], 24) for s in samples]
    assert [dict(r) for r in rows] == expected  # the long prompt lost its oldest tokens
    assert len(rows[5]["input_ids"]) == 24
    # A resumed stage reads the file again: an empty stream still gives the stage its rows.
    never = (s for s in () if s)
    assert len(tokenised_rows(never, tokenizer, 24, tmp_path)) == len(samples)
    assert (tmp_path / ROWS_FILE).is_file()
    assert not list(tmp_path.rglob("*.partial"))
    # Rows cross chunk boundaries unchanged.
    assert write_rows(iter(samples * 3000), tokenizer, 24, tmp_path / "big.arrow") == 18000


def test_batches_are_right_padded_with_the_padding_masked(tokenizer):
    short = encode_sample(tokenizer, "item", "<a_2><b_2><c_2>", 64)
    long = encode_sample(tokenizer, "The item titled toy story is:", "<a_1><b_2><c_3>", 64)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # as for generation
    try:
        batch = sft_collator(tokenizer)([dict(short), dict(long)])  # training pads right
    finally:
        tokenizer.padding_side = side
    n = len(short["input_ids"])
    assert batch["input_ids"][0, :n].tolist() == short["input_ids"]
    assert (batch["input_ids"][0, n:] == tokenizer.pad_token_id).all()
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(long["input_ids"]) - n)
    assert batch["labels"][0, :n].tolist() == short["labels"]
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert batch["labels"][1].tolist() == long["labels"]
