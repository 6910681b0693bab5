"""`conrec serve`: the filter service, without loading torch."""

from __future__ import annotations

import typer


def serve(
    host: str | None = typer.Option(None, help="Bind address; default: CONREC_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, help="Port; default: CONREC_PORT or 8000."),
) -> None:
    """Run the filter service (POST /filter); configured by CONREC_* environment variables."""
    from service.core.config import Settings
    from service.main import run

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run(Settings(**overrides))
