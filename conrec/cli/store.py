"""`conrec store status|rollback|forget`: the prediction store's published run, the runs still
within their TTL, pointing readers back at an earlier one, and erasing a user. Loads redis and
numpy, never torch."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conrec.cli.options import config_options
from conrec.store.keys import DEFAULT_PREFIX

if TYPE_CHECKING:
    from conrec.store.runs import PredictionStore
    from conrec.store.values import RunMeta

app = typer.Typer(
    help="The prediction store: published runs, rollback, erasure.", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)


@dataclass(frozen=True)
class StoreAddress:
    """The prediction store a command works on: a Redis server or cluster, or an embedded store
    file."""

    redis_url: str | None = field(
        default=None,
        metadata={"help": "The store's Redis (redis:// or rediss://).", "env": "CONREC_REDIS_URL"},
    )
    cluster: bool = field(
        default=False,
        metadata={"help": "--redis-url names a Redis Cluster node.", "env": "CONREC_REDIS_CLUSTER"},
    )
    prefix: str = field(
        default=DEFAULT_PREFIX,
        metadata={"help": "Prediction store key prefix.", "env": "CONREC_STORE_PREFIX"},
    )
    store_path: str | None = field(
        default=None,
        metadata={
            "help": "Or an embedded store file (batch-gen's without --redis-url: "
            "runs/prediction-store/redis.db); wins over CONREC_REDIS_URL."
        },
    )


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


@app.command()
@config_options(StoreAddress, into="address")
def status(
    address: StoreAddress,
    as_json: AsJson = False,
) -> None:
    """The published run (age, users, codebook and model versions) and every run whose
    predictions are still whole, which `conrec store rollback` can point back at."""
    with _opened(address) as store:
        published, runs = store.current_run(), store.published_runs()
    now = time.time()
    if as_json:
        shown = {
            "prefix": address.prefix,
            "published": None if published is None else _run_fields(published, now),
            "runs": [_run_fields(run, now) for run in runs],
        }
        print(json.dumps(shown, indent=2))
        return
    if published is None:
        console.print(f"No run is published under prefix {escape(address.prefix)!r}.")
    else:
        gone = " [red](its predictions have expired)[/red]" if published.expires_at <= now else ""
        console.print(
            f"Published run [bold]{escape(published.run_id)}[/bold]: "
            f"{_duration(now - published.created_at)} old, {published.user_count} users, "
            f"codebook {escape(published.codebook_version)}, "
            f"model {escape(published.model_version)}{gone}"
        )
    table = Table(title=f"Runs within their TTL (prefix {escape(address.prefix)})")
    for column in ("run", "created (UTC)", "age", "expires in", "users", "codebook", "model"):
        table.add_column(column)
    for run in runs:
        mark = " (published)" if published and run.run_id == published.run_id else ""
        table.add_row(
            escape(run.run_id) + mark,
            datetime.fromtimestamp(run.created_at, UTC).strftime("%Y-%m-%d %H:%M"),
            _duration(now - run.created_at),
            _duration(run.expires_at - now),
            str(run.user_count),
            escape(run.codebook_version),
            escape(run.model_version),
        )
    console.print(table)


@app.command()
@config_options(StoreAddress, into="address")
def rollback(
    run_id: Annotated[str, typer.Option(help="The earlier run to publish again.")],
    address: StoreAddress,
    as_json: AsJson = False,
) -> None:
    """Point readers back at an earlier run published whole whose predictions have not expired;
    exit 2, changing nothing, for one that never was or has expired."""
    from conrec.store.values import StoreError

    with _opened(address) as store:
        before = store.current_run()
        try:
            after = store.rollback(run_id)
        except StoreError as exc:
            errors.print(f"rollback refused: {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None
    previous = before.run_id if before else None
    if as_json:
        print(json.dumps({"published": _run_fields(after, time.time()), "previous": previous}))
        return
    console.print(
        f"Published run is now [bold]{escape(after.run_id)}[/bold] "
        f"(was {escape(str(previous))}); readers switch within their pointer cache time."
    )


@app.command()
@config_options(StoreAddress, into="address")
def forget(
    user_id: Annotated[str, typer.Argument(help="The user to erase.")],
    address: StoreAddress,
    as_json: AsJson = False,
) -> None:
    """Erase a user's predictions from every run the store still holds (an erasure request).
    Running services drop the user from their run cache at their next store poll
    (CONREC_THRESHOLDS_RELOAD_S, 2 s by default). Take the user out of the batch job's input
    too, or the next run predicts for them again."""
    with _opened(address) as store:
        held = store.forget(user_id)
    if as_json:
        print(json.dumps({"user_id": user_id, "erased_from": held}))
        return
    runs = ", ".join(escape(run) for run in held) or "none (no run held them)"
    console.print(f"Erased user {escape(user_id)!r} from runs: {runs}.")


@contextlib.contextmanager
def _opened(address: StoreAddress) -> Iterator[PredictionStore]:
    """The store the options name, its pointer read afresh on every call."""
    from conrec.store.connection import visiting
    from conrec.store.runs import PredictionStore

    if address.store_path is not None and address.cluster:
        raise typer.BadParameter("--cluster needs --redis-url: an embedded store is one server")
    if address.store_path is None and not address.redis_url:
        raise typer.BadParameter("give --redis-url (or set CONREC_REDIS_URL) or --store-path")
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(
                visiting(
                    address.redis_url,
                    cluster=address.cluster,
                    embedded_path=address.store_path,
                    timeout_s=10.0,
                )
            )
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc)) from None
        yield PredictionStore(client, prefix=address.prefix, pointer_cache_s=0.0)


def _run_fields(run: RunMeta, now: float) -> dict:
    return {
        "run_id": run.run_id,
        "created_at": run.created_at,
        "age_s": round(now - run.created_at, 1),
        "expires_in_s": round(run.expires_at - now, 1),
        "user_count": run.user_count,
        "codebook_version": run.codebook_version,
        "model_version": run.model_version,
        "ttl_s": run.ttl_s,
    }


def _duration(seconds: float) -> str:
    """3d 4h, 5h 12m, 7m 3s: the two largest units."""
    if seconds < 0:
        return "expired"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts[:2])
