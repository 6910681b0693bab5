"""Liveness, readiness, the thresholds in force and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from conrec.service.api.deps import StateDep
from conrec.service.core.thresholds import POLICY_KEYS, Mode, OverrideRange, Score, Surface

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
    codebooks = state.codebooks
    return {
        "ready": not reasons,
        "reasons": reasons,
        "codebook_version": codebooks.current.version if codebooks else None,
        # Every version loaded (the current one and the previous, whose predictions are still
        # scored), and the last load error while serving (the loaded versions were kept).
        "codebook_versions": [
            {
                "version": loaded.version,
                "current": loaded is codebooks.current,
                "items": len(loaded.items),
                "table_version": loaded.items.table_version,
                "path": str(loaded.path),
                "loaded_at": loaded.loaded_at,
            }
            for loaded in (codebooks.by_version.values() if codebooks else ())
        ],
        "codebook_error": state.codebook_error,
        # The calibrated score's artifacts of the current codebook (current first), and why the
        # last one was refused while the loaded ones serve on.
        "calibration_versions": list(codebooks.current.calibrations) if codebooks else [],
        "calibration_error": state.calibration_error,
        "config_version": thresholds.version if thresholds else None,
        "config_error": state.thresholds.last_error,
        # Informational, not a readiness condition (see above).
        "store": {
            "url": state.store_url,
            "up": state.store_error is None,
            "error": state.store_error,
            "published_run": state.published.run_id if state.published else None,
            "published_at": state.published.created_at if state.published else None,
        },
    }


class ThresholdsInForce(BaseModel):
    """The thresholds config a /filter request gets now. Surfaces are resolved: each with its
    threshold and mode, whichever form the file used; any other surface gets ``default`` and
    ``mode``. The config fields are null while none has loaded (the service is then unready)."""

    path: str | None  # the thresholds file; null: the built-in config (no file configured)
    version: str | None
    default: float | None
    mode: Mode | None
    score: Score | None
    max_drop_share: float | None
    holdout: float | None
    log_sample: float | None
    surfaces: dict[str, Surface]
    override_range: OverrideRange | None
    calibrated_override_range: OverrideRange | None
    loaded_at: float | None  # unix time the config in force was loaded
    last_error: str | None  # why the last read of the file was rejected (the config was kept)


@router.get(
    "/thresholds",
    response_model=ThresholdsInForce,
    responses={503: {"model": ThresholdsInForce, "description": "No config loaded yet."}},
)
async def thresholds(state: StateDep, response: Response) -> dict[str, object]:
    source = state.thresholds
    current = source.current
    if current is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        config = {
            **dict.fromkeys(
                ("version", "default", "override_range", "calibrated_override_range", *POLICY_KEYS)
            ),
            "surfaces": {},
        }
    else:
        config = current.model_dump()
    return {
        **config,
        "path": str(source.path) if source.path else None,
        "loaded_at": source.loaded_at if current else None,
        "last_error": source.last_error,
    }


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition of the service's metrics.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
