"""Command-line options, each written once: the options of a config dataclass's fields
(``config_options``, as TRL's ``HfArgumentParser`` and vLLM's ``EngineArgs.add_cli_args`` make
theirs), and the options several commands share.

A field's ``metadata["help"]`` is its option's help; its metadata may also name the environment
variable the option falls back to (``env``), a number's bounds (``min``, ``max``, which the YAML
loader, ``conrec.model.yaml_config``, checks too), or make the field a positional argument
(``argument``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")


def _prepared_folder(value: str | None) -> str | None:
    # Checked before any work starts, so a wrong path is a usage error, not a traceback later.
    from conrec.model.data.prepared import EVENTS_FILE, ITEMS_FILE, is_prepared

    if value is not None and not is_prepared(value):
        raise typer.BadParameter(
            f"{value} has no {ITEMS_FILE} and {EVENTS_FILE}; write them with "
            f"`conrec data prepare --out {value}`"
        )
    return value


DataOption = Annotated[
    str | None,
    typer.Option(
        help="Prepared-tables folder (`conrec data prepare`); default: the config's `data`, "
        "else ml-100k's.",
        callback=_prepared_folder,
    ),
]


def config_options(
    cls: type,
    *,
    into: str = "cfg",
    exclude: tuple[str, ...] = (),
    nested: Mapping[str, tuple[type, tuple[str, ...]]] | None = None,
    defaults: Mapping[str, Callable[[], Any]] | None = None,
    panel: str | None = None,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A command decorator: every field of ``cls`` (but ``exclude``) becomes an option, and the
    command gets the built config as its ``into`` argument.

    ``nested`` flattens a dataclass field into options too: ``{"job": (BatchJobConfig,
    exclude)}``. ``defaults`` makes a required field optional on the command line: when the
    option is not given, the callable's value is used (its docstring is appended to the help).
    """
    nested = dict(nested or {})
    defaults = dict(defaults or {})

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        signature, own = _own_parameters(command, into)
        groups = {None: (cls, (*exclude, *nested))}
        groups.update(nested)
        sources = {
            f.name: f
            for kind, skip in groups.values()
            for f in dataclasses.fields(kind)
            if f.name not in skip and f.init
        }
        added = [
            option
            for kind, skip in groups.values()
            for option in field_parameters(kind, skip, defaults, panel)
        ]
        if clash := {p.name for p in own} & {p.name for p in added}:
            raise TypeError(f"{command.__name__}: options {sorted(clash)} are also config fields")

        @functools.wraps(command)
        def run(**given: Any) -> T:
            mine = {name: given.pop(name) for name in list(given) if name in signature.parameters}
            for name, factory in defaults.items():
                if given.get(name) is None:
                    given[name] = factory()
            try:
                parts = {}
                for name, (kind, _) in nested.items():
                    names = {f.name for f in dataclasses.fields(kind)}
                    parts[name] = kind(**{k: given.pop(k) for k in list(given) if k in names})
                config = cls(**given, **parts)
            except ValueError as exc:  # a dataclass's own check of a combination of values
                raise typer.BadParameter(str(exc)) from exc
            return command(**mine, **{into: config})

        return _with_parameters(run, command, signature, [*own, *added], sources)

    return decorate


def override_options(
    cls: type,
    *,
    into: str = "overrides",
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    panel: str | None = None,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A command decorator for settings that override a config file's: each field of ``cls``
    (``only`` those, but ``exclude``) becomes an option that is unset unless given, and the
    command gets the given ones as a dict, its ``into`` argument."""
    names = only or tuple(f.name for f in dataclasses.fields(cls))
    skip = tuple(f.name for f in dataclasses.fields(cls) if f.name not in names) + exclude

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        signature, own = _own_parameters(command, into)
        added = field_parameters(cls, skip, panel=panel, unset=True)
        sources = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}

        @functools.wraps(command)
        def run(**given: Any) -> T:
            mine = {name: given.pop(name) for name in list(given) if name in signature.parameters}
            chosen = {name: value for name, value in given.items() if value not in (None, [])}
            return command(**mine, **{into: chosen})

        return _with_parameters(run, command, signature, [*own, *added], sources)

    return decorate


def _own_parameters(
    command: Callable[..., Any], into: str
) -> tuple[inspect.Signature, list[inspect.Parameter]]:
    """The command's signature, and its parameters but ``into`` with their annotations resolved
    (typer would read them in this module's namespace, not the command's)."""
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=hints[p.name]) for p in signature.parameters.values() if p.name != into
    ]
    return signature, own


def _with_parameters(
    run: Callable[..., T],
    command: Callable[..., T],
    signature: inspect.Signature,
    parameters: list[inspect.Parameter],
    sources: dict[str, dataclasses.Field],
) -> Callable[..., T]:
    del run.__wrapped__  # typer reads the signature set here, not the command's
    run.__signature__ = signature.replace(parameters=parameters, return_annotation=None)
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    # Which field each generated parameter stands for (stacked decorators add up), so that a
    # test can hold the command line to the dataclasses.
    run.config_fields = {**getattr(command, "config_fields", {}), **sources}
    return run


def field_parameters(
    cls: type,
    exclude: tuple[str, ...] = (),
    defaults: Mapping[str, Callable[[], Any]] | None = None,
    panel: str | None = None,
    unset: bool = False,
) -> list[inspect.Parameter]:
    """The command-line parameters of ``cls``'s fields (but ``exclude``): keyword-only, each
    annotated with its type and a ``typer.Option`` made from the field. ``unset``: every option
    defaults to None (not given), its help naming the field's own default."""
    defaults = defaults or {}
    hints = typing.get_type_hints(cls, include_extras=True)
    parameters = []
    for field in dataclasses.fields(cls):
        if field.name in exclude or not field.init:
            continue
        if "help" not in field.metadata:
            raise TypeError(f"{cls.__name__}.{field.name} has no help to show")
        kind, help_text = hints[field.name], field.metadata["help"]
        if unset:
            kind, default = kind | None, None
            own = _default_of(field)
            if own not in (None, ..., [], {}):
                help_text = f"{help_text} Default: {own}."
        elif field.name in defaults:
            kind, default = kind | None, None
            help_text = f"{help_text} Default: {inspect.getdoc(defaults[field.name])}"
        else:
            default = _default_of(field)
        bounds = {"min": field.metadata.get("min"), "max": field.metadata.get("max")}
        option = (
            typer.Argument(help=help_text, **bounds)
            if field.metadata.get("argument")
            else typer.Option(
                help=help_text, envvar=field.metadata.get("env"), rich_help_panel=panel, **bounds
            )
        )
        parameters.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, option],
            )
        )
    return parameters


def _default_of(field: dataclasses.Field) -> Any:
    """The field's default; ``...`` (typer's "required") if it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return ...
