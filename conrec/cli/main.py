"""The one `conrec` command: every subcommand lives in a module beside this one.

The `conrec` package around it is the application layer: the jobs that compose the parts
(codebook, model, batch_gen, store, service), which never import it. A subcommand's module
is imported only when that subcommand runs (or when `conrec --help` lists it), so `conrec serve`
loads the service and the store alone: the service image carries neither `model/` nor
`batch_gen/`, and a command whose package an install lacks says so instead of failing on import.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import NamedTuple

import click
import typer
from typer.core import TyperGroup


class Command(NamedTuple):
    module: str
    attribute: str  # a Typer app (a group of subcommands) or a command function
    needs: tuple[str, ...]  # the parts it runs on (`conrec.<part>`), besides conrec's own


_EVERY_PART = ("codebook", "model", "batch_gen", "store")
COMMANDS: dict[str, Command] = {
    "data": Command("conrec.cli.data", "app", ("model",)),
    "codebook": Command("conrec.cli.codebook", "app", ("codebook", "model")),
    "train": Command("conrec.cli.train", "train", ("model",)),
    "evaluate": Command("conrec.cli.evaluate", "evaluate", _EVERY_PART),
    "backtest": Command("conrec.cli.backtest", "backtest", _EVERY_PART),
    "report": Command("conrec.cli.report", "report", _EVERY_PART),
    "batch-gen": Command("conrec.cli.batch", "batch_gen", _EVERY_PART),
    "pipeline": Command("conrec.cli.pipeline", "app", _EVERY_PART),
    "serve": Command("conrec.cli.serve", "serve", ("service", "store", "codebook")),
    "store": Command("conrec.cli.store", "app", ("store",)),
    "thresholds": Command("conrec.cli.thresholds", "app", ("service",)),
    "demo": Command("conrec.cli.demo", "demo", (*_EVERY_PART, "service")),
}


class LazyCommands(TyperGroup):
    """A group that imports a subcommand's module when the subcommand is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        spec = COMMANDS[cmd_name]
        missing = [package for package in spec.needs if not _installed(package)]
        if missing:
            return _unavailable(cmd_name, missing)
        target = getattr(importlib.import_module(spec.module), spec.attribute)
        if isinstance(target, typer.Typer):
            # A group even when it holds one subcommand (`conrec data prepare`).
            command: click.Command = typer.main.get_group(target)
        else:
            single = typer.Typer(add_completion=False)
            single.command(cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name
        return command


def _installed(part: str) -> bool:
    try:
        return importlib.util.find_spec(f"conrec.{part}") is not None
    except ModuleNotFoundError:  # a finder that refuses the name outright
        return False


def _unavailable(name: str, missing: list[str]) -> click.Command:
    """What an install without a command's packages (the service image) answers for that
    command: which packages it lacks, and no traceback."""
    packages = ", ".join(missing)

    def fail(args: tuple[str, ...]) -> None:
        raise click.ClickException(
            f"`conrec {name}` is not available in this install: it needs {packages} "
            "(the full install, `pip install 'conrec-filter[all]'`, or the batch image)"
        )

    return click.Command(
        name,
        callback=fail,
        # Whatever the command would take, the answer is the same.
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True},
        help=f"(not in this install: needs {packages})",
    )


def _distributed() -> ModuleType | None:
    """``conrec.model.distributed``, or None in an install without the model package (the service
    image), where nothing trains and so no process follows a leader."""
    try:
        return importlib.import_module("conrec.model.distributed")
    except ModuleNotFoundError:
        return None


def _released(*_: object, **__: object) -> None:
    """A command that succeeded under a launcher lets the ranks that followed it exit too.
    (One that failed exits with an error, and the launcher stops the other ranks.)"""
    distributed = _distributed()
    if distributed is not None:
        distributed.release_followers()


app = typer.Typer(
    cls=LazyCommands,
    help="CoNRec negative-feedback filter: data, codebook, training, evaluation, nightly batch, "
    "serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    result_callback=_released,
)


@app.callback()
def _ranks() -> None:
    """Under `accelerate launch` or `torchrun`, rank 0 runs the command and the other ranks only
    join its training (`conrec.model.distributed`); without a launcher this does nothing."""
    distributed = _distributed()
    if distributed is not None and distributed.is_follower():
        from conrec.model.curriculum import train_curriculum

        distributed.follow_leader(train_curriculum)


if __name__ == "__main__":
    app()
