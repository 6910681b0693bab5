"""Settings written once: every option generated from a config dataclass carries the field's
help, default, bounds and environment variable, and no hand-written option restates a field."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from conrec.cli.main import COMMANDS, app


def leaf_commands() -> Iterator[tuple[str, Callable]]:
    """(`conrec ...` words, function) of every command that runs."""
    for name, spec in COMMANDS.items():
        target = getattr(importlib.import_module(spec.module), spec.attribute)
        if isinstance(target, typer.Typer):
            for info in target.registered_commands:
                yield (
                    f"{name} {info.name or info.callback.__name__.replace('_', '-')}",
                    info.callback,
                )
        else:
            yield name, target


def click_params(function: Callable) -> dict[str, Any]:
    single = typer.Typer()
    single.command()(function)
    return {p.name: p for p in typer.main.get_command(single).params}


COMMAND_FUNCTIONS = dict(leaf_commands())
GENERATED = {words: f for words, f in COMMAND_FUNCTIONS.items() if hasattr(f, "config_fields")}


def test_the_commands_built_on_config_dataclasses() -> None:
    assert {"batch-gen", "data prepare", "codebook train", "train", "evaluate", "backtest"} <= set(
        GENERATED
    )


@pytest.mark.parametrize("words", sorted(GENERATED))
def test_every_generated_option_is_its_field(words: str) -> None:
    function = GENERATED[words]
    params = click_params(function)
    for name, field in function.config_fields.items():
        param = params[name]
        assert param.help.startswith(field.metadata["help"]), (words, name)
        own = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else None
        )
        if param.default is None and own is not None:
            # Unset unless given (an override, or a computed default): the help names the
            # field's own default, where there is one to name.
            assert own in ([], {}, ()) or "Default: " in param.help, (words, name)
        else:
            assert param.default == own or (own is None and param.required), (words, name)
        assert param.envvar == field.metadata.get("env"), (words, name)
        is_argument = param.param_type_name == "argument"
        assert is_argument == bool(field.metadata.get("argument")), (words, name)


def test_no_hand_written_option_restates_a_field() -> None:
    fields = {name: field for f in GENERATED.values() for name, field in f.config_fields.items()}
    helps = {field.metadata["help"] for field in fields.values()}
    for words, function in COMMAND_FUNCTIONS.items():
        generated = getattr(function, "config_fields", {})
        for name, param in click_params(function).items():
            if name in generated or name == "help":
                continue
            assert param.help not in helps, (words, name, "restates a field's help")
            field = fields.get(name)
            if field is not None and field.default not in (None, dataclasses.MISSING):
                assert param.default != field.default, (words, name, "restates a default")


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["batch-gen", "--model-dir", "m", "--codebook-dir", "c", "--ray-workers", "2"],
         "Ray workers write to a shared Redis"),
        (["batch-gen", "--model-dir", "m", "--codebook-dir", "c", "--engine", "fast"],
         "'fast' is not one of"),
        (["batch-gen", "--model-dir", "m", "--codebook-dir", "c", "--k", "0"],
         "Input should be greater than or equal to 1"),
        (["data", "prepare", "--events", "e.csv", "--ts-unit", "days"], "'days' is not one of"),
        (["evaluate", "--rows", "nonsense"], "unknown rows ['nonsense']"),
        (["codebook", "train", "--collision-policy", "merge"], "'merge' is not one of"),
    ],
)  # fmt: skip
def test_bad_settings_are_usage_errors_before_any_work(args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env={"CONREC_REDIS_URL": None}, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
