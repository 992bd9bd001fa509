"""Command-line functions that ``app.py`` calls: serve the studio, manage API keys.

    python app.py [serve] [--host H] [--port P] [--data-dir D] [--devices cpu,cuda:0] …
    python app.py keys create NAME | keys list | keys revoke NAME

``add_serve_arguments`` / ``serve`` and ``add_keys_arguments`` / ``keys_command``
are separate so the entry point can use its own parser class; ``main`` is a
self-contained front end used by the tests (``python -c "from studio.cli
import main; main([...])"``).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import threading
from pathlib import Path

from engine.datadir import default_data_dir
from engine.devices import parse_devices
from engine.errors import EngineError, InvalidOptions
from engine.models.licences import model_flags
from scheduler.cpu import DEFAULT_WORKER_PRIORITY, WORKER_PRIORITIES
from studio.config import (
    StudioConfig,
    UploadLimits,
    WebhookSettings,
    env_host,
    env_port,
    on_spaces,
    on_zerogpu,
    parse_auth,
)

log = logging.getLogger("studio.cli")

WARNING_BANNER = "!" * 78


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``python app.py [serve]``; GRADIO_SERVER_NAME/PORT give the defaults."""
    backend = parser.add_argument_group("scale-out (Celery workers behind a broker)")
    backend.add_argument(
        "--backend",
        choices=("local", "celery", "zerogpu"),
        default=None,
        help="run jobs in local worker processes (default), on Celery workers, or in "
        "@spaces.GPU calls (the default on a ZeroGPU Space, where SPACES_ZERO_GPU is set)",
    )
    backend.add_argument("--broker", default=None, help="broker URL, e.g. redis://HOST:6379/0")
    backend.add_argument(
        "--redis", default=None, help="Redis URL for progress and worker registry (default: broker)"
    )
    backend.add_argument("--queue", default="fusion-jobs", help="Celery queue name")
    backend.add_argument(
        "--max-in-flight", type=int, default=32, help="jobs handed to Celery at once"
    )
    backend.add_argument(
        "--split-video",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run a long video's segments on every free slot at once (default: on for "
        "local workers when more than one slot is free, off for Celery)",
    )
    safety = parser.add_argument_group("responsible use")
    safety.add_argument(
        "--content-threshold",
        type=float,
        default=0.8,
        help="content gate: refuse inputs whose NSFW score is above this (0..1; operator only)",
    )
    safety.add_argument(
        "--content-gate",
        choices=("dispatch", "submit"),
        default="dispatch",
        help="where the content gate runs: 'dispatch' (default) checks every input in the "
        "job's first stage, before any of it is processed, deletes refused inputs at once "
        "and shows the refusal on the job; 'submit' refuses them in the request itself",
    )
    net = parser.add_argument_group("server")
    net.add_argument(
        "--host", default=None, help="bind address (default: $GRADIO_SERVER_NAME or 127.0.0.1)"
    )
    net.add_argument(
        "--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)"
    )
    net.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="jobs, keys and models live here (default: $FUSION_DATA_DIR, /data "
        "on a Hugging Face Space with persistent storage, else ./data)",
    )
    net.add_argument("--models-dir", type=Path, default=None)
    net.add_argument(
        "--public-url",
        default=None,
        help="the URL people reach this server at (for links in webhooks)",
    )
    net.add_argument(
        "--share", action="store_true", help="also open a temporary public Gradio share link"
    )
    net.add_argument("--no-ui", action="store_true", help="serve only the API and metrics")
    work = parser.add_argument_group("workers and queue")
    work.add_argument("--devices", default="cpu", help="e.g. cpu, cuda:0 or cuda:0,cuda:1")
    work.add_argument(
        "--slots-per-device", type=int, default=1, help="jobs run at once on each device"
    )
    work.add_argument(
        "--threads-per-slot",
        type=int,
        default=0,
        help="CPU threads per model session (0 = ONNX Runtime's choice)",
    )
    work.add_argument(
        "--worker-priority",
        choices=WORKER_PRIORITIES,
        default=DEFAULT_WORKER_PRIORITY,
        help="CPU priority of the job workers: idle (default) lets the UI and API preempt "
        "jobs at once, low is nice 10, normal is the server's own",
    )
    work.add_argument("--max-queued", type=int, default=10_000, help="queued jobs in all")
    work.add_argument(
        "--max-queued-per-owner", type=int, default=1_000, help="queued jobs per person or API key"
    )
    work.add_argument(
        "--retention-hours",
        type=float,
        default=7 * 24.0,
        help="finished jobs and their files are deleted after this long",
    )
    access = parser.add_argument_group("access")
    access.add_argument(
        "--require-api-key",
        action="store_true",
        help="no anonymous owner anywhere: the API needs a key, the UI a login "
        "(--auth, or an API key's name and key)",
    )
    access.add_argument(
        "--auth",
        action="append",
        metavar="USER:PASSWORD",
        help="log in to the UI (repeat for several people)",
    )
    access.add_argument(
        "--share-link-hours", type=float, default=24.0, help="lifetime of result share links"
    )
    uploads = parser.add_argument_group("upload limits")
    uploads.add_argument("--max-upload-mb", type=float, default=200.0, help="per file")
    uploads.add_argument("--max-megapixels", type=float, default=40.0, help="per image or frame")
    uploads.add_argument("--max-video-seconds", type=float, default=600.0)
    uploads.add_argument("--max-sources", type=int, default=8)
    uploads.add_argument("--max-batch", type=int, default=20, help="targets per UI submission")
    uploads.add_argument(
        "--max-output-megapixels",
        type=float,
        default=80.0,
        help="largest output frame (after the frame enhancer's upscaling)",
    )
    uploads.add_argument(
        "--max-job-cost",
        type=float,
        default=None,
        help="largest job, in face-swap units: frames x faces x pixel-boost sub-images x "
        "(1 + enhancers) (default: unbounded)",
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--licences",
        default=None,
        help="offer only models of these licence classes, comma-separated: permissive, "
        "non-commercial, research, unknown (default: all)",
    )
    models.add_argument(
        "--model-memory-gb",
        type=float,
        default=None,
        help="each worker keeps its loaded models within this much memory, least recently "
        "used first out (default: unbounded)",
    )
    uploads.add_argument(
        "--ui-cache-hours",
        type=float,
        default=2.0,
        help="UI uploads and face crops left in Gradio's cache are deleted after this long",
    )
    uploads.add_argument(
        "--ui-cache-gb",
        type=float,
        default=10.0,
        help="room for UI uploads waiting in Gradio's cache, all visitors together",
    )
    hooks = parser.add_argument_group("webhooks")
    hooks.add_argument(
        "--webhook-allow",
        action="append",
        metavar="HOST_OR_CIDR",
        default=[],
        help="allow callbacks to this host or network although it is private "
        "or loopback (for local testing only)",
    )
    hooks.add_argument(
        "--webhook-retry-base",
        type=float,
        default=5.0,
        help="first retry delay in seconds (doubles each time)",
    )
    hooks.add_argument("--webhook-max-attempts", type=int, default=8)
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-format", choices=("text", "json"), default="text")
    logs.add_argument("--log-level", default="info")
    return parser


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    devices = tuple(str(d) for d in parse_devices(args.devices))
    limits = UploadLimits(
        max_file_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_request_bytes=int(args.max_upload_mb * 1024 * 1024) * (args.max_sources + 3),
        max_pixels=int(args.max_megapixels * 1_000_000),
        max_video_seconds=args.max_video_seconds,
        max_sources=args.max_sources,
        max_batch=args.max_batch,
        max_output_pixels=int(args.max_output_megapixels * 1_000_000),
        max_job_cost=args.max_job_cost,
    )
    licences, budget = model_flags(args.licences, args.model_memory_gb)
    webhooks = WebhookSettings(
        allow=tuple(args.webhook_allow or ()),
        retry_base_seconds=args.webhook_retry_base,
        max_attempts=args.webhook_max_attempts,
    )
    return StudioConfig(
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        host=args.host or env_host(),
        port=args.port or env_port(),
        models_dir=args.models_dir,
        devices=devices,
        slots_per_device=args.slots_per_device,
        threads_per_slot=args.threads_per_slot,
        worker_priority=args.worker_priority,
        max_queued=args.max_queued,
        max_queued_per_owner=args.max_queued_per_owner,
        retention_hours=args.retention_hours,
        require_api_key=args.require_api_key,
        auth=parse_auth(args.auth),
        share=args.share,
        public_url=args.public_url,
        share_link_hours=args.share_link_hours,
        log_format=args.log_format,
        log_level=args.log_level,
        limits=limits,
        webhooks=webhooks,
        ui=not args.no_ui,
        backend=args.backend or ("zerogpu" if on_zerogpu() else "local"),
        broker_url=args.broker,
        redis_url=args.redis,
        celery_queue=args.queue,
        max_in_flight=args.max_in_flight,
        split_video=args.split_video,
        content_threshold=args.content_threshold,
        content_gate=args.content_gate,
        ui_cache_hours=args.ui_cache_hours,
        ui_cache_gb=args.ui_cache_gb,
        licences=licences,
        model_memory_bytes=budget,
    )


def security_warnings(config: StudioConfig, keys_configured: bool) -> list[str]:
    """What an operator must hear about before exposing the server."""
    warnings = []
    exposed = not config.loopback or config.share
    if exposed and not keys_configured and not config.auth:
        where = "a public share link" if config.share else f"{config.host}"
        warnings.append(
            f"The studio is reachable on {where} with no API keys and no --auth: anyone who "
            "can reach it can upload faces and use this machine's compute. Create a key "
            "(python app.py keys create NAME) and/or pass --auth USER:PASSWORD."
        )
    if config.webhooks.allow:
        warnings.append(
            "Webhooks may call private or loopback addresses "
            f"({', '.join(config.webhooks.allow)}): use --webhook-allow only for testing."
        )
    return warnings


def serve(args: argparse.Namespace) -> int:
    """Run the studio until SIGINT/SIGTERM; running jobs go back to the queue on the way out."""
    import uvicorn

    from studio.logs import configure_logging
    from studio.server import build_app

    config = config_from_args(args)
    configure_logging(config.log_format, config.log_level)
    app = build_app(config)
    studio = app.state.studio
    for warning in security_warnings(config, studio.keys.any_active()):
        for line in (WARNING_BANNER, f"WARNING: {warning}", WARNING_BANNER):
            log.warning(line)
    if on_spaces():
        log.info("running on a Hugging Face Space; data dir %s", config.data_dir)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # end event streams before waiting on them
            studio.begin_shutdown()
            super().handle_exit(sig, frame)

    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        timeout_graceful_shutdown=int(config.shutdown_grace_seconds),
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )
    server = Server(uv_config)
    url = config.base_url
    banner = f"Fusion Studio on {url}  (API {url}/api/v1/docs, metrics {url}/metrics)"
    if config.log_format == "json":
        log.info(banner, extra={"url": url})  # stdout stays one JSON object per line
    else:
        print(banner, flush=True)
    if config.share:
        threading.Thread(target=_share, args=(server, config), daemon=True).start()
    server.run()
    return 0


def _share(server, config: StudioConfig) -> None:
    """Open a Gradio share tunnel once the server listens (needs internet access)."""
    import time

    from gradio import networking

    while not server.started and not server.should_exit:
        time.sleep(0.1)
    try:
        url = networking.setup_tunnel(
            "127.0.0.1", config.port, secrets.token_urlsafe(32), None, None
        )
        print(f"Public share link: {url.replace('http://', 'https://')}", flush=True)
    except Exception as exc:  # offline, or the share server refused
        log.warning("could not open a share link: %s", exc)


def add_keys_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--data-dir", type=Path, default=None)
    # --data-dir is also accepted after the action (SUPPRESS keeps the parent's value).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="keys_action", required=True)
    create = sub.add_parser(
        "create", parents=[common], help="create a key and print it (shown once)"
    )
    create.add_argument("name")
    create.add_argument(
        "--admin",
        action="store_true",
        help="the operator's key: may also download models (in the UI, log in with it)",
    )
    sub.add_parser(
        "list", parents=[common], help="list active keys (names and prefixes, never the keys)"
    )
    revoke = sub.add_parser("revoke", parents=[common], help="revoke the active key of this name")
    revoke.add_argument("name")
    return parser


def keys_command(args: argparse.Namespace) -> int:
    """``keys create NAME`` prints the key alone on its last line (it is stored hashed)."""
    from studio.db import open_db
    from studio.identity import KeyStore

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    db = open_db(data_dir / "studio")
    try:
        keys = KeyStore(db)
        if args.keys_action == "create":
            created = keys.create(args.name, admin=args.admin)
            role = "admin key" if created.key.admin else "API key"
            print(f"Created {role} {created.key.name!r} (owner {created.key.owner}).")
            print(f"Webhook signing secret: {created.webhook_secret}")
            print(
                "Store the key now; it is not shown again. Use it as: Authorization: Bearer <key>"
            )
            print(created.token)
        elif args.keys_action == "list":
            rows = keys.list()
            if not rows:
                print("no API keys")
            for key in rows:
                print(f"{key.name}\t{key.prefix}…\t{key.owner}" + ("\tadmin" if key.admin else ""))
        elif args.keys_action == "revoke":
            key = keys.revoke(args.name)
            print(f"revoked {key.name} ({key.prefix}…)")
    finally:
        db.close()
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InvalidOptions(message)


def main(argv: list[str] | None = None) -> int:
    """``serve …`` (the default) or ``keys …``; bad input exits 2 with one ``error:`` line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "keys":
            args = add_keys_arguments(_Parser(prog="app.py keys")).parse_args(argv[1:])
            return keys_command(args)
        if argv and argv[0] == "serve":
            argv = argv[1:]
        args = add_serve_arguments(_Parser(prog="app.py")).parse_args(argv)
        return serve(args)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


def serve_main(argv: list[str]) -> int:
    """For ``cli/serve.py``: parse the serve flags and run."""
    return main(["serve", *argv])


def keys_main(argv: list[str]) -> int:
    """For ``cli/keys.py``."""
    return main(["keys", *argv])


if __name__ == "__main__":
    sys.exit(main())
