"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import StateDep

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep, response: Response) -> dict[str, object]:
    """Ready once a codebook and a thresholds config are loaded. Redis is deliberately not
    checked: without it the service still answers (failing open)."""
    reasons = state.not_ready_reasons()
    if reasons:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    thresholds = state.thresholds.current
    catalogue = state.catalogue
    return {
        "ready": not reasons,
        "reasons": reasons,
        "codebook_version": catalogue.current.version if catalogue else None,
        # Every version loaded (the current one and the previous, whose predictions are still
        # scored), and the last load error while serving (the loaded versions were kept).
        "codebook_versions": [
            {
                "version": loaded.version,
                "current": loaded is catalogue.current,
                "items": len(loaded.items),
                "table_version": loaded.items.table_version,
                "path": str(loaded.path),
                "loaded_at": loaded.loaded_at,
            }
            for loaded in (catalogue.by_version.values() if catalogue else ())
        ],
        "codebook_error": state.codebook_error,
        "config_version": thresholds.version if thresholds else None,
        "config_error": state.thresholds.last_error,
    }


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
