"""A real RabbitMQ for the scale-out tests, and brokers the Celery tests run against.

``RabbitMQServer`` starts Debian's ``rabbitmq-server`` as a private, non-system
instance: its own node name, AMQP port, distribution port, epmd port, Erlang
cookie (a ``HOME`` in the temp dir), database (``RABBITMQ_MNESIA_BASE``) and
logs (``RABBITMQ_LOG_BASE``), so it never touches a system instance or another
test run. Its configuration is the repository's ``deploy/rabbitmq/rabbitmq.conf``
(so the real server checks that file) with the test's listener and overrides.
``restart()`` keeps the node name, port and database: durable queues and
persistent messages come back, exactly as after a production broker crash.

Start costs about five seconds: use the module-scoped ``rabbitmq_server``
fixture (tests/conftest.py) so a module starts it once, and
``reset()`` between tests.

``Broker`` is what the broker-parametrized Celery tests see: the broker URL,
the coordination Redis URL, the extra worker flags, restart and queue depth,
for a Redis broker or a RabbitMQ broker (with Redis beside it for results,
progress and announcements).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
REPO_CONF = REPO / "deploy" / "rabbitmq" / "rabbitmq.conf"
# The scripts themselves, not /usr/sbin's wrappers (those switch to the "rabbitmq" user).
RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def rabbitmq_installed() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists() and shutil.which("epmd") is not None


class RabbitMQServer:
    """One private RabbitMQ node bound to 127.0.0.1 (user guest/guest, vhost ``/``)."""

    def __init__(
        self,
        directory: Path,
        *,
        conf: dict[str, str] | None = None,
        channel_tick_ms: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.nodename = f"fusiontest{self.port}@localhost"
        self.conf = dict(conf or {})
        # How often a channel checks its consumer timeout (RabbitMQ: once a minute).
        self.channel_tick_ms = channel_tick_ms
        self.process: subprocess.Popen | None = None
        self.epmd: subprocess.Popen | None = None
        self.log_path = self.directory / "log" / "rabbit.log"
        self._write_files()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    # -- files and environment --------------------------------------------------------

    def _write_files(self) -> None:
        home = self.directory / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(f"FUSIONTEST{self.port}{os.getpid()}")
        cookie.chmod(0o600)
        overrides = {
            "listeners.tcp.default": str(self.port),
            "loopback_users": "none",
            # A test machine's disk may hold less than production's free-space floor.
            "disk_free_limit.absolute": "50MB",
            **self.conf,
        }
        lines = []
        for line in REPO_CONF.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            lines.append(f"# (test override) {line}" if key in overrides else line)
        lines += ["", "# test overrides"] + [f"{k} = {v}" for k, v in overrides.items()]
        (self.directory / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        rabbit = []
        if self.channel_tick_ms is not None:
            rabbit.append(f"{{channel_tick_interval, {int(self.channel_tick_ms)}}}")
        (self.directory / "advanced.config").write_text(f"[{{rabbit, [{', '.join(rabbit)}]}}].\n")
        (self.directory / "enabled_plugins").write_text("[].\n")

    def env(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "HOME": str(d / "home"),  # the Erlang cookie, shared by server and rabbitmqctl
            "RABBITMQ_CONF_ENV_FILE": str(d / "no-rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(self.log_path),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
            # epmd is ours (below), on its own port, so that stop() can end it. No
            # scheduler busy-waiting: on a small shared machine the spinning Erlang
            # schedulers take CPU from the jobs (RabbitMQ's runtime guide recommends
            # this where the node shares its cores).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-start_epmd false +sbwt none +sbwtdcpu none +sbwtdio none"
            ),
        }

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> RabbitMQServer:
        if not rabbitmq_installed():
            pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        env = self.env()
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        with (self.directory / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() takes erl_child_setup and friends too
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"rabbitmq-server did not start within {START_TIMEOUT_S} s")

    def ping(self) -> bool:
        """An AMQP handshake and a channel: the broker is up and accepts clients."""
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as connection:
                connection.connect()
                connection.default_channel  # noqa: B018 (opens the channel)
                return True
        except Exception:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: an orderly stop; SIGKILL: a crash (nothing flushed on the way out)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def restart(self, sig: int = signal.SIGTERM, down_seconds: float = 0.0) -> None:
        """Stop and start the same node (same port and database)."""
        self.stop(sig)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        """Stop the node and its epmd."""
        self.stop()
        epmd, self.epmd = self.epmd, None
        if epmd is not None and epmd.poll() is None:
            epmd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                epmd.wait(timeout=10)
            if epmd.poll() is None:
                epmd.kill()
                epmd.wait(timeout=10)

    # -- operator commands and inspection ---------------------------------------------

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n NODE ARGS`` against this node; returns its stdout."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def set_consumer_timeout(self, milliseconds: int) -> None:
        """What an operator runs to change ``consumer_timeout`` without a restart (RabbitMQ's
        documented ``application:set_env``); channels opened afterwards use it."""
        self.ctl("eval", f"application:set_env(rabbit, consumer_timeout, {int(milliseconds)}).")
        value = self.ctl("eval", "application:get_env(rabbit, consumer_timeout).")
        assert re.search(rf"\{{ok,\s*{int(milliseconds)}\}}", value), value

    def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (0 when it does not exist)."""
        from amqp.exceptions import NotFound
        from kombu import Connection

        with Connection(self.url, connect_timeout=5) as connection:
            try:
                declared = connection.default_channel.queue_declare(queue=queue, passive=True)
            except NotFound:
                return 0
            return int(declared.message_count)

    def delete_queue(self, queue: str) -> None:
        from kombu import Connection

        with Connection(self.url, connect_timeout=5) as connection:
            connection.default_channel.queue_delete(queue=queue)

    def purge_queue(self, queue: str) -> None:
        from amqp.exceptions import NotFound
        from kombu import Connection

        with Connection(self.url, connect_timeout=5) as connection, contextlib.suppress(NotFound):
            connection.default_channel.queue_purge(queue=queue)

    def reset(self, queues: tuple[str, ...] = ("fusion-jobs",)) -> None:
        """Between tests: a running node with none of an earlier test's messages. Queues
        are purged, not deleted: kombu remembers per broker URL, process-wide, which
        queues it declared, and would publish into a deleted one (the broker drops such
        messages)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        for queue in queues:
            self.purge_queue(queue)

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.directory / "server.out", self.log_path):
            with contextlib.suppress(OSError):
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


@contextlib.contextmanager
def running_rabbitmq(directory: Path, **options) -> Iterator[RabbitMQServer]:
    server = RabbitMQServer(directory, **options)
    try:
        server.start()
        yield server
    finally:
        server.close()


# -- the broker a Celery test runs against -----------------------------------------------


@dataclass
class Broker:
    """The broker of a Celery test: Redis alone, or RabbitMQ with Redis beside it."""

    kind: str  # "redis" | "rabbitmq"
    url: str  # --broker
    redis_url: str  # --redis: results, progress, announcements, cancel flags
    restart: Callable[..., None]  # restart(sig, down_seconds=…): the broker, not Redis
    waiting: Callable[[str], int]  # messages waiting in a queue of the broker

    @property
    def worker_args(self) -> tuple[str, ...]:
        return () if self.url == self.redis_url else ("--redis", self.redis_url)

    @property
    def executor_options(self) -> dict[str, str]:
        return {} if self.url == self.redis_url else {"redis_url": self.redis_url}


def redis_broker(server: RedisServer) -> Broker:
    import redis

    def waiting(queue: str) -> int:
        return int(redis.Redis.from_url(server.url).llen(queue))

    return Broker("redis", server.url, server.url, server.restart, waiting)


def rabbitmq_broker(server: RabbitMQServer, redis_server: RedisServer) -> Broker:
    server.reset()
    return Broker("rabbitmq", server.url, redis_server.url, server.restart, server.queue_depth)
