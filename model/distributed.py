"""Training under `accelerate launch` or `torchrun`: N processes, one of which leads.

The leader (rank 0) runs the command a user typed, writes every file and does everything that
is not training. The other ranks are followers: they run no command of their own, they join
each curriculum the leader starts (the leader broadcasts the job) and train it data-parallel
beside it, then wait for the next job until the leader says it is done. So every command that
trains (`conrec train`, `conrec evaluate`'s rows, the pipeline's train step, the demo) runs
unchanged under a launcher, and nothing is written twice.

With one process (no launcher) every function here is a no-op over a world of one, and torch
distributed is never initialised. The launchers set WORLD_SIZE and RANK in the environment
before Python starts, which is how a rank is told apart without importing torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


def world_size() -> int:
    """Processes training together (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_leader() -> bool:
    return rank() == 0


def is_follower() -> bool:
    return world_size() > 1 and not is_leader()


def _state():
    """Accelerate's process state: it initialises torch distributed from the launcher's
    environment (gloo on CPUs, NCCL on GPUs) on first use. Accelerate treats processes without
    an accelerator as one process each unless told they are CPU processes. (Not cached: each
    HF Trainer resets the shared state and sets it up again, the same way.)"""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def unsharded_on_cpu() -> str | None:
    """Why a sharded launch (an FSDP or DeepSpeed accelerate config) does not shard here, if it
    does not: Accelerate applies both only to GPU (and other accelerator) processes, so on CPU
    processes it trains plain data-parallel copies of the model instead."""
    import torch

    if torch.cuda.is_available():
        return None
    for plan in ("FSDP", "DEEPSPEED"):
        if os.environ.get(f"ACCELERATE_USE_{plan}", "false").lower() == "true":
            return (
                f"{plan} needs GPUs: Accelerate trains these CPU processes data-parallel "
                "(each holds the whole model) instead"
            )
    return None


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@contextmanager
def leader_first() -> Iterator[None]:
    """The leader runs the block first (e.g. writes a cache), then the followers (which read
    it); the whole world leaves together."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def broadcast(value: Any = None) -> Any:
    """The leader's `value`, on every rank (a picklable object)."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    _state()
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def shard(items: Sequence[T]) -> list[int]:
    """The positions of `items` this rank handles: every world_size()-th from its rank, so every
    item is handled once and by one rank."""
    return list(range(rank(), len(items), world_size()))


def gather_sharded(values: Sequence[T], total: int) -> tuple[list[T], list[int]]:
    """Reassemble the per-rank results of `shard` (this rank's `values`, in its positions'
    order) into one list of `total` results, in item order, on every rank; with how many
    results each rank contributed, in rank order."""
    if world_size() == 1:
        return list(values), [len(values)]
    from accelerate.utils import gather_object

    _state()
    per_rank = gather_object([list(values)])  # one list per rank, rank order
    out: list[Any] = [None] * total
    for r, part in enumerate(per_rank):
        out[r :: world_size()] = part
    return out, [len(part) for part in per_rank]


def per_rank_batch(global_batch: int, what: str) -> int:
    """A stage's batch per process: settings are global batches, so a run on N processes takes
    the same optimizer steps over the same samples as a run on one."""
    n = world_size()
    if global_batch % n:
        raise ValueError(
            f"{what} = {global_batch} is a global batch and must split evenly over the "
            f"{n} training processes: choose a multiple of {n}"
        )
    return global_batch // n


def follow_leader(train: Callable[..., object]) -> NoReturn:
    """A follower's whole life: join every curriculum the leader starts (`train(*job)`, with
    `conrec.model.curriculum.train_curriculum`), until the leader stops; then the process ends.

    It ends without interpreter teardown: the follower has trained, met the leader at every
    barrier and writes nothing of its own, while teardown destroys native libraries' threads in
    an order that aborted a follower at random, after its run had finished ('terminate called
    without an active exception', exit code -6)."""
    while (job := broadcast()) is not None:
        train(*job)
    finish()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def lead(job: tuple) -> None:
    """The leader starts a curriculum: the followers receive `job` and train it alongside."""
    if world_size() > 1:
        broadcast(job)


def release_followers() -> None:
    """The leader's command succeeded: the followers return and exit. (A leader that fails
    exits without this; the launcher then stops the followers, wherever they wait.)"""
    if world_size() > 1:
        broadcast(None)
        finish()


def finish() -> None:
    """Close this rank's process group while the interpreter is whole. Trainers (and the DDP
    wrappers holding the group) sit in reference cycles: collected first, they let go of the
    group here rather than during interpreter teardown, where gloo's threads abort."""
    import gc

    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
