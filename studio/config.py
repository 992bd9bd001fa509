"""The studio's settings, in one value built from flags and the environment.

Every per-deployment setting travels in a ``StudioConfig`` passed down to the
app factory; nothing is read from process-wide state after start-up, so two
studios (for example in tests) can run side by side in one process.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.datadir import default_data_dir
from engine.errors import InvalidOptions
from scheduler.cpu import DEFAULT_WORKER_PRIORITY, WORKER_PRIORITIES

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class UploadLimits:
    """What one submission may upload; checked before a job is created."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_request_bytes: int = 1024 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_video_seconds: float = 600.0
    max_sources: int = 8
    max_batch: int = 20
    # Work bounds, computed at submit (engine.cost): the output frame's size after the
    # frame enhancer, and a job's cost in face-swap units (None: unbounded).
    max_output_pixels: int = 80_000_000
    max_job_cost: float | None = None


@dataclass(frozen=True)
class WebhookSettings:
    """Delivery policy of job callbacks (see ``studio.webhooks``)."""

    allow: tuple[str, ...] = ()  # hosts or CIDRs allowed despite being private/loopback
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 8
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class StudioConfig:
    """Settings of one studio server."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_dir: Path | None = None
    devices: tuple[str, ...] = ("cpu",)
    slots_per_device: int = 1
    threads_per_slot: int = 0
    worker_priority: str = DEFAULT_WORKER_PRIORITY  # jobs yield the CPU (scheduler.cpu)
    max_queued: int = 10_000
    max_queued_per_owner: int = 1_000
    retention_hours: float = 7 * 24.0
    require_api_key: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    share: bool = False
    public_url: str | None = None
    share_link_hours: float = 24.0
    log_format: str = "text"
    log_level: str = "info"
    limits: UploadLimits = field(default_factory=UploadLimits)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    ui: bool = True
    shutdown_grace_seconds: float = 5.0
    # Execution backend: "local" worker processes, "celery" workers behind a broker, or
    # "zerogpu" (@spaces.GPU calls on a Hugging Face ZeroGPU Space, scheduler.zerogpu).
    backend: str = "local"
    broker_url: str | None = None
    redis_url: str | None = None  # progress pub/sub and worker registry; defaults to the broker
    celery_queue: str = "fusion-jobs"
    max_in_flight: int = 32  # jobs handed to Celery at once; the rest wait in SQLite
    # Long videos run as segments on every free slot: None = on for local workers, off for
    # Celery (where segments travel to other machines and back); True/False forces it.
    split_video: bool | None = None
    # Content gate: inputs scoring above this (open_nsfw probability) are refused.
    content_threshold: float = 0.8
    # Where the gate runs: "dispatch" (the job's first stage, off the request path: a
    # submit stays cheap) or "submit" (in the request; refused content is never stored).
    content_gate: str = "dispatch"
    # Files in Gradio's cache (UI uploads, face crops) are deleted after this long at most.
    ui_cache_hours: float = 2.0
    ui_cache_gb: float = 10.0  # uploads waiting in that cache, all visitors together
    # Models: only these licence classes are offered (None: all), and each worker keeps
    # its loaded models within this many bytes (None: unbounded).
    licences: frozenset[str] | None = None
    model_memory_bytes: int | None = None

    @property
    def splits_video(self) -> bool:
        """Whether a long video is split over the free slots (see ``split_video``)."""
        if self.split_video is not None:
            return self.split_video
        return self.backend == "local"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise InvalidOptions(f"port must be between 1 and 65535; got {self.port}")
        if self.slots_per_device < 1:
            raise InvalidOptions("slots per device must be at least 1")
        if self.worker_priority not in WORKER_PRIORITIES:
            raise InvalidOptions(
                f"worker priority must be one of {', '.join(WORKER_PRIORITIES)}; "
                f"got {self.worker_priority!r}"
            )
        if self.log_format not in ("text", "json"):
            raise InvalidOptions(f"log format must be text or json; got {self.log_format!r}")
        if self.max_queued < 1 or self.max_queued_per_owner < 1:
            raise InvalidOptions("queue limits must be at least 1")
        if self.backend not in ("local", "celery", "zerogpu"):
            raise InvalidOptions(f"backend must be local, celery or zerogpu; got {self.backend!r}")
        if self.backend == "celery" and not self.broker_url:
            raise InvalidOptions("--backend celery needs --broker URL (redis://… or amqp://…)")
        if self.content_gate not in ("dispatch", "submit"):
            raise InvalidOptions(
                f"content gate must run at dispatch or submit; got {self.content_gate!r}"
            )
        if not 0.0 < self.content_threshold <= 1.0:
            raise InvalidOptions("content threshold must be above 0 and at most 1")
        if self.max_in_flight < 1:
            raise InvalidOptions("max in flight must be at least 1")
        if not self.ui_cache_hours > 0 or not self.ui_cache_gb > 0:
            raise InvalidOptions("the UI cache's lifetime and size must be above 0")

    @property
    def studio_dir(self) -> Path:
        """Where the studio keeps its own state (keys, webhook outbox, secrets)."""
        return Path(self.data_dir) / "studio"

    @property
    def loopback(self) -> bool:
        """True when the server is reachable only from this machine."""
        return is_loopback_host(self.host)

    @property
    def api_open(self) -> bool:
        """Whether the API accepts requests without a key, as the single local owner.

        Only a loopback-bound server without any configured key, ``--auth`` or share
        tunnel is open: anyone who can reach it is on this machine. (Whether keys exist
        is checked per request, since ``keys create`` may run while the server does.)
        """
        return self.loopback and not self.share and not self.require_api_key and not self.auth

    @property
    def ui_login(self) -> bool:
        """Whether the UI asks for a login (``--auth`` users, or API keys): no anonymous owner."""
        return bool(self.auth) or self.require_api_key

    @property
    def check_host(self) -> bool:
        """Loopback servers answer only to local names (DNS rebinding); a share tunnel
        reaches them under its own name."""
        return self.loopback and not self.share

    @property
    def ui_cache_dir(self) -> Path:
        """Gradio's cache of UI uploads and outputs: the studio's own, emptied at start."""
        return self.studio_dir / "ui-cache"

    @property
    def base_url(self) -> str:
        """The URL people and webhook receivers use to reach this server."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def is_loopback_host(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_host(default: str = "127.0.0.1") -> str:
    """``GRADIO_SERVER_NAME`` (set to 0.0.0.0 on Hugging Face Spaces) or the default."""
    return os.environ.get("GRADIO_SERVER_NAME") or default


def env_port(default: int = DEFAULT_PORT) -> int:
    value = os.environ.get("GRADIO_SERVER_PORT")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidOptions(f"GRADIO_SERVER_PORT must be a port number; got {value!r}") from None


def on_spaces() -> bool:
    """True on a Hugging Face Space (the platform sets ``SPACE_ID``)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space: the platform sets ``SPACES_ZERO_GPU`` (read as spaces does)."""
    return (os.environ.get("SPACES_ZERO_GPU") or "").lower() in ("1", "t", "true")


def parse_auth(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``USER:PASSWORD`` pairs for the UI login."""
    pairs = []
    for value in values or []:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise InvalidOptions(f"--auth must be USER:PASSWORD; got {value!r}")
        pairs.append((user, password))
    return tuple(pairs)
