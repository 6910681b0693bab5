"""The filter service's app factory and entry point (`conrec serve`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry

from conrec.service.api.middleware import MetricsMiddleware, RequestIdMiddleware
from conrec.service.api.routes import filter as filter_routes
from conrec.service.api.routes import ops
from conrec.service.api.schemas import openapi_components
from conrec.service.core.config import Settings
from conrec.service.core.logs import configure_logging
from conrec.service.core.state import ServiceState
from conrec.service.metrics import create_metrics
from conrec.store.connection import stop_embedded

logger = logging.getLogger(__name__)
# How many more container objects (lists, dicts, ...) may be alive than at the last collection
# before the young generation is collected (Python's default: 700).
GC_THRESHOLD = 50_000


def create_app(
    settings: Settings | None = None, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build the app; metrics go to ``registry`` (a fresh one by default, so that several apps
    can live in one process, as they do in tests)."""
    settings = Settings() if settings is None else settings
    metrics = create_metrics(registry)
    state = ServiceState.build(settings, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Says at start-up, in one log line, whether predictions can be read at all.
        await state.refresh_store()
        task = asyncio.create_task(_reload_loop(state))
        try:
            yield
        finally:
            task.cancel()
            await state.store.client.aclose()
            if state.decision_log is not None:
                state.decision_log.close()
            if state.embedded is not None:
                stop_embedded(state.embedded)

    app = FastAPI(title="CoNRec negative filter", version="0.1.0", lifespan=lifespan)
    app.state.service = state
    app.include_router(filter_routes.router)
    app.include_router(ops.router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Outermost (added last): the id is set before anything else runs.
    app.add_middleware(RequestIdMiddleware)
    _add_body_schemas(app)
    return app


def _add_body_schemas(app: FastAPI) -> None:
    # /filter's bodies are msgspec structs, which FastAPI does not know: add their schemas.
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                openapi_components()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


async def _reload_loop(state: ServiceState) -> None:
    """Poll the thresholds file and the codebook root (hot reload: a moved ``CURRENT`` pointer,
    a grown item table, or a codebook that failed to load before), and the store's published
    run (its age and reachability)."""
    while True:
        await asyncio.sleep(state.settings.thresholds_reload_s)
        await state.refresh_store()
        try:
            state.thresholds.refresh()
        except Exception:
            logger.exception("reload failed; keeping the current config")
        try:
            # In a worker thread: reading a large item table must not stall requests. The
            # new set of loaded codebooks is swapped in by one assignment when it is complete.
            await asyncio.to_thread(state.refresh_codebooks)
        except Exception:
            logger.exception("codebook reload failed; keeping the loaded versions")


def run(settings: Settings | None = None) -> None:
    """`conrec serve`: build the app from ``settings`` (default: the environment) and serve."""
    settings = Settings() if settings is None else settings
    configure_logging(settings.log_level, settings.log_format)
    serve(create_app(settings), settings)


def serve(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` with uvicorn (uvloop and httptools when installed) until interrupted."""
    import uvicorn
    from threadpoolctl import threadpool_limits

    # The scoring matmuls are small ([1000, dim] x [dim, 20]) and requests arrive concurrently:
    # BLAS threads would only contend with the request handlers for the cores.
    threadpool_limits(limits=1, user_api="blas")
    tune_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        # Logging is the process's (`configure_logging`): uvicorn's records reach its handler.
        log_config=None,
    )


def tune_collector() -> None:
    """Keep the cyclic garbage collector off the request path. Everything alive now (modules,
    codebook, app) lives as long as the process: frozen out of the collector's generations, it
    is never traversed again. And a body with SIDs holds a thousand lists while it is decoded,
    so at the default threshold the young generation was collected several times per request
    (~6% of the process's time under load); requests make almost no cyclic garbage, so the
    threshold is raised to ``GC_THRESHOLD``."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread on a free loopback port; yield its base
    URL. For embedding the service in another process (the demo, tests)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
