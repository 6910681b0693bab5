"""The fixed choices of command-line options, as enums: a wrong value fails before any work."""

from __future__ import annotations

from enum import StrEnum

from conrec.codebook_training import ITEM_VECTORS


class Engine(StrEnum):
    auto = "auto"  # the faster engine on this hardware: batch_gen.engines.choice.resolve_engine
    hf = "hf"
    vllm = "vllm"


class Split(StrEnum):
    test = "test"
    validation = "validation"


class DatasetName(StrEnum):
    ml100k = "ml-100k"
    kuairand = "kuairand"


class Context(StrEnum):
    recent = "recent"
    negatives = "negatives"
    full = "full"


class NoNegatives(StrEnum):
    skip = "skip"
    generate = "generate"


class CollisionPolicy(StrEnum):
    reassign = "reassign"
    allow = "allow"


# What a codebook encodes (`conrec.codebook_training`), its values taken from there.
ItemVectors = StrEnum("ItemVectors", {v.replace("+", "_"): v for v in ITEM_VECTORS})
