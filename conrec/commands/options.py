"""Options that several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer


def _prepared_folder(value: str | None) -> str | None:
    # Checked before any work starts, so a wrong path is a usage error, not a traceback later.
    from model.data.prepared import EVENTS_FILE, ITEMS_FILE, is_prepared

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
