"""Builds the studio's single ASGI app: REST API, /metrics, static files, and Gradio at /.

The FastAPI lifespan starts the ``Studio`` (scheduler, webhook worker, event
pump) before the first request and stops it gracefully after the last one,
releasing running jobs back to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import os

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

from studio import ui
from studio.api import build_router
from studio.config import StudioConfig, on_spaces
from studio.core import Studio
from studio.errors import install_handlers
from studio.gradio_guard import GradioFileGuard
from studio.http_guard import HostAndOriginGuard
from studio.identity import OwnerCookieMiddleware

log = logging.getLogger("studio.server")

API_TITLE = "Fusion Studio API"
API_VERSION = "1"


def build_app(config: StudioConfig, studio: Studio | None = None) -> FastAPI:
    """The whole server as one FastAPI app; ``app.state.studio`` holds the services."""
    studio = studio or Studio(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await studio.start()
        try:
            yield
        finally:
            await studio.stop()

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description=(
            "Submit face-swap jobs, follow their progress (Server-Sent Events) and fetch "
            "results. Authenticate with `Authorization: Bearer <api key>`."
        ),
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        lifespan=lifespan,
    )
    app.state.studio = studio
    install_handlers(app)
    app.include_router(build_router(studio))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        if studio.started:
            studio.metrics.update_from_stats(await studio.scheduler.stats())
            studio.metrics.update_from_workers(studio.remote_workers())
        return Response(studio.metrics.render(), media_type=studio.metrics.content_type)

    app.mount(ui.STATIC_URL, StaticFiles(directory=ui.STATIC_DIR), name="studio-static")
    if config.ui:
        _mount_ui(app, studio)
    # Middleware runs outermost-last-added: host and origin first, then the owner cookie,
    # then the file guard (which needs the cookie to know the owner).
    app.add_middleware(
        GradioFileGuard,
        registry=studio.ui_files,
        owner_of=studio.ui_owner,
        max_file_bytes=config.limits.max_file_bytes,
        max_upload_bytes=config.limits.max_request_bytes,
    )
    same_site = "none" if on_spaces() else "lax"
    app.add_middleware(OwnerCookieMiddleware, same_site=same_site)
    app.add_middleware(
        HostAndOriginGuard,
        bound_host=config.host,
        check_host=config.check_host,
        public_url=config.public_url,
    )
    return app


def _mount_ui(app: FastAPI, studio: Studio) -> None:
    config = studio.config
    # Gradio's cache is the studio's own folder, emptied at start and guarded per owner
    # (studio.gradio_guard); Gradio reads the location from the environment only.
    os.environ["GRADIO_TEMP_DIR"] = str(studio.ui_files.cache_dir)
    blocks = ui.build_ui(studio)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        server_name=config.host,
        server_port=config.port,
        auth=studio.check_login if config.ui_login else None,
        auth_message=ui.login_message(config) if config.ui_login else None,
        footer_links=["settings"],  # the REST API has its own docs
        run_history=False,
        ssr_mode=False,
        max_file_size=config.limits.max_file_bytes,
        i18n=ui.I18N,
        theme=ui.theme(),
        css_paths=[ui.STATIC_DIR / "studio.css"],
        head=ui.head_html(),
        enable_monitoring=False,
        mcp_server=False,
    )
    for route in app.routes:
        if isinstance(route, Mount) and route.path in ("", "/") and hasattr(route.app, "tokens"):
            studio.gradio_app = route.app
    # Defence in depth: a mounted app never counts as launched, which switches off Gradio's
    # own check that event inputs were uploaded (its processing_utils._check_allowed).
    # This attribute is not a supported API; GradioFileGuard enforces the rule regardless.
    blocks.has_launched = True
