"""Training started as a user starts it: `accelerate launch` with the shipped data-parallel
config around `conrec train`, in a subprocess whose log the tests read."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from conrec.model.train_config import CurriculumConfig
from tests.redis_support import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DDP_CONFIG = ROOT / "model" / "configs" / "accelerate" / "ddp.yaml"


def write_config(cfg: CurriculumConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    return path


def accelerate_train(
    config: Path, log: Path, processes: int = 2, launch_config: Path = DDP_CONFIG
) -> subprocess.Popen:
    """`accelerate launch --config_file LAUNCH_CONFIG --num_processes N conrec train CONFIG`."""
    return launch(["train", config], log, processes, launch_config)


def launch(
    args: list, log: Path, processes: int = 2, launch_config: Path = DDP_CONFIG
) -> subprocess.Popen:
    """`accelerate launch --config_file LAUNCH_CONFIG --num_processes N conrec ARGS...`."""
    cmd = [
        BIN / "accelerate", "launch", "--config_file", launch_config,
        "--num_processes", str(processes), "--main_process_port", str(free_port()),
        BIN / "conrec", *args,
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def finished(proc: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    """The log of a launch that must succeed."""
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    return log.read_text()


def wait_while_running(predicate, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Poll `predicate` until it holds; fail with the log if the process ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process under it, as a machine that dies would (torchrun
    starts each worker in a session of its own, so the launcher's group is not enough)."""
    tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    for p in tree:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    proc.wait()
