"""SASRec (Kang & McAuley, 2018) on negative-feedback sequences: the sequential baseline.

A causal self-attention encoder over each user's negatives (oldest first), trained to predict
the next negative at every position with a full softmax over the catalogue (sequences are
right-padded). A BOS token starts
every sequence, so a user with no negatives yet still gets the learned prior over first
negatives. Tuning budget (validation cutoff): `epochs` in `EPOCH_GRID`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from conrec.evaluation.baselines import Catalogue
from conrec.model.data.splits import UserWindow
from conrec.model.data.tables import Polarity
from conrec.model.data.visibility import EventLog

PAD, BOS, OFFSET = 0, 1, 2  # token ids; catalogue row r is token r + OFFSET
IGNORE = -100
EPOCH_GRID = (20, 60)


@dataclass
class SASRecConfig:
    dim: int = field(default=64, metadata={"help": "Embedding and hidden width."})
    blocks: int = field(default=2, metadata={"help": "Self-attention blocks."})
    heads: int = field(default=2, metadata={"help": "Attention heads."})
    max_len: int = field(default=50, metadata={"help": "Most recent negatives kept."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout in every block."})
    epochs: int = field(default=20, metadata={"help": "Passes over the training sequences."})
    batch_size: int = field(default=128, metadata={"help": "Sequences per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    seed: int = field(default=0, metadata={"help": "Init and data order seed."})


class SASRecModel(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.item = nn.Embedding(n_items + OFFSET, cfg.dim, padding_idx=PAD)
        self.position = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, 2 * cfg.dim, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] (right-padded) -> next-item logits [B, L, n_items].

        The causal mask alone keeps padding out: real tokens come first and never attend later
        positions, so no key-padding mask (whose fully masked rows would give NaN) is needed.
        """
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        h = self.dropout(self.item(tokens) + self.position(positions))  # [B, L, dim]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        h = self.norm(self.encoder(h, mask=causal, is_causal=True))
        return h @ self.item.weight[OFFSET:].T  # [B, L, N]


class SASRecBaseline:
    name = "sasrec"
    exact = False
    # Its training dominates an evaluation's time: two fits per split, each on the events up to
    # the earliest cutoff of its half of the users.
    max_fits = 2

    def __init__(self, catalogue: Catalogue, config: SASRecConfig | None = None):
        self.catalogue = catalogue
        self.config = config or SASRecConfig()
        self.model: SASRecModel | None = None

    def _tokens(self, items: list[str]) -> list[int]:
        return (self.catalogue.index(items) + OFFSET).tolist()

    def fit(self, log: EventLog, until: int) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        visible = log.upto(until)
        negatives = visible[visible["polarity"] == Polarity.NEG]
        sequences = [
            [BOS, *self._tokens(group["item_id"].tolist())][-(cfg.max_len + 1) :]
            for _, group in negatives.groupby("user_id", sort=True)
        ]
        sequences = [s for s in sequences if len(s) > 1]
        inputs = _right_pad([s[:-1] for s in sequences], cfg.max_len)  # [U, L]
        targets = _right_pad([s[1:] for s in sequences], cfg.max_len)  # [U, L]
        model = SASRecModel(len(self.catalogue), cfg)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        generator = torch.Generator().manual_seed(cfg.seed)
        model.train()
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(inputs), generator=generator).split(cfg.batch_size):
                logits = model(inputs[batch])  # [B, L, N]
                target = targets[batch]
                target = torch.where(target == PAD, IGNORE, target - OFFSET)
                loss = nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        self.model = model

    @torch.no_grad()
    def scores(self, window: UserWindow) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the SASRec baseline before scoring")
        tokens = [BOS, *self._tokens(window.negatives())][-self.config.max_len :]
        logits = self.model(torch.tensor([tokens]))  # [1, L, N]
        return logits[0, -1].double().numpy()


def _right_pad(rows: list[list[int]], length: int) -> torch.Tensor:
    out = torch.full((len(rows), length), PAD, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, : len(row)] = torch.tensor(row[-length:])
    return out
