"""The curriculum's training curves as one PNG: GRPO reward (mean +- std) and KL per step."""

from __future__ import annotations

from pathlib import Path

from conrec.codebook.figures import pyplot


def plot_grpo(stages: dict[str, dict], path: str | Path) -> None:
    """Reward and KL of every GRPO step, stage after stage, from the stages' metrics (stage label
    -> metrics with the step `log`); nothing is drawn for a curriculum without GRPO stages."""
    if not any(stage.get("log") for stage in stages.values()):
        return
    plt = pyplot()

    fig, (ax_reward, ax_kl) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for name, stage in stages.items():
        log = stage.get("log")
        if not log:
            continue
        steps = [offset + row["step"] for row in log]
        mean = [row["reward"] for row in log]
        std = [row.get("reward_std", 0.0) for row in log]
        label = name.rsplit("_", 1)[-1]
        ax_reward.plot(steps, mean, marker="o", ms=3, label=label)
        ax_reward.fill_between(
            steps, [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2,
        )  # fmt: skip
        ax_kl.plot(steps, [row.get("kl", 0.0) for row in log], marker="o", ms=3, label=label)
        offset = steps[-1]
        ax_reward.axvline(offset + 0.5, color="grey", lw=0.5)
    ax_reward.set(xlabel="GRPO step", ylabel="reward (eq. 6)", title="progressive GRPO reward")
    ax_kl.set(xlabel="GRPO step", ylabel="KL to reference", title="KL")
    ax_reward.legend(title="context")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
