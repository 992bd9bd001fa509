"""How job files travel between the studio and the workers.

The studio keeps every job's files under ``DATA_DIR/jobs/<id>/`` (``inputs/``,
``outputs/``, ``work/``; see ``scheduler.files``). A worker on another machine
needs the inputs and must deliver the run's output back. ``JobStorage`` is
that exchange; ``SharedDirectoryStorage`` (the default) is a directory that
every machine mounts (NFS, CephFS, a Docker volume on one host).

Contract, the same for every implementation:

1. **Keys, not paths.** A task message names files by *key*: a relative POSIX
   path under the data directory (``jobs/<id>`` for the job directory,
   ``jobs/<id>/outputs/.r<run>.result.png`` for a run's output). No absolute
   path of the studio's machine reaches a worker: each machine may mount the
   storage elsewhere (``--data-dir`` points at the mount on each machine).
2. **Inputs are complete before the task is sent.** The studio writes, fsyncs
   and closes every input when the job is submitted, long before a task is
   sent (``export``); workers never modify inputs. With NFS, close-to-open
   consistency makes such a file visible to a worker that opens it later.
3. **A run writes only its own files**: its private output (the partial name
   carries the run number, so two runs never share a file) and, for video,
   files under ``work/``. ``publish`` makes the finished output durable and
   visible to the studio *before* the task reports success.
4. **The studio reads an output only after the task reported success**
   (``collect``), then renames it to its final name itself, under the run's
   fencing token, exactly as with local workers. A late or duplicate run can
   therefore never replace a published output.
5. **Everything under ``jobs/<id>/`` belongs to that job** and is deleted with
   it by the studio's retention.
6. **Segment files of a split video follow rules 3 and 4**: a worker writes
   ``jobs/<id>/work/segment-NNNNN.mp4`` and publishes it; the studio collects
   each segment as it finishes and joins them when all are there.

An object store (S3, GCS, MinIO) fits the same five calls: ``export``
uploads the inputs (once per job) and returns object keys; ``open`` downloads
them into a local cache on the worker and returns a local scratch path for the
output; ``publish`` uploads the output (an object PUT is atomic); ``collect``
downloads it to the local partial path, where the studio publishes it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Protocol

from engine.errors import InvalidInput, InvalidOptions


class JobStorage(Protocol):
    """Moves one run's files between the studio and a worker (see the module docstring)."""

    def export(self, job_dir: Path, output: Path) -> tuple[str, str]:
        """Studio: make the job's inputs reachable; keys of the job dir and the output."""

    def collect(self, output_key: str, output: Path) -> None:
        """Studio: after success, make the run's output present at the local ``output``."""

    def open(self, job_dir_key: str, output_key: str) -> tuple[Path, Path]:
        """Worker: local job directory (inputs readable) and the local output path."""

    def publish(self, output_key: str, output: Path) -> None:
        """Worker: make the written output durable and visible to the studio."""

    def path_for(self, key: str) -> Path:
        """This machine's local path for a key (a scratch path for an object store)."""


class SharedDirectoryStorage:
    """A directory every machine mounts (NFS, CephFS, a bind mount on one host).

    ``root`` is this machine's mount point of the shared data directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"SharedDirectoryStorage({str(self.root)!r})"

    # -- keys ---------------------------------------------------------------------

    def key_for(self, path: Path) -> str:
        """The key of a file under the shared directory (error if it is elsewhere)."""
        resolved = Path(path).resolve()
        try:
            relative = resolved.relative_to(self.root)
        except ValueError:
            raise InvalidOptions(
                f"{path} is not inside the shared data directory {self.root}: "
                "the studio and the workers must use the same shared --data-dir"
            ) from None
        return relative.as_posix()

    def path_for(self, key: str) -> Path:
        """This machine's path of a key; refuses keys outside the jobs' own directories
        (a worker acts on what a message names, so a message may only name job files)."""
        pure = PurePosixPath(key)
        if (
            pure.is_absolute()
            or ".." in pure.parts
            or len(pure.parts) < 2
            or pure.parts[0] != "jobs"
        ):
            raise InvalidInput(f"bad storage key {key!r}")
        path = self.root.joinpath(*pure.parts)
        if path.is_symlink():
            raise InvalidInput(f"bad storage key {key!r}: a link")
        return path

    # -- studio side --------------------------------------------------------------

    def export(self, job_dir: Path, output: Path) -> tuple[str, str]:
        """The inputs already sit in the shared directory: only keys are needed."""
        return self.key_for(job_dir), self.key_for(output)

    def collect(self, output_key: str, output: Path) -> None:
        if not self.path_for(output_key).is_file():
            raise InvalidInput(
                f"the worker reported success but {output_key} is missing under {self.root}: "
                "do the studio and the workers share the same data directory?"
            )

    # -- worker side --------------------------------------------------------------

    def open(self, job_dir_key: str, output_key: str) -> tuple[Path, Path]:
        job_dir = self.path_for(job_dir_key)
        if not (job_dir / "inputs").is_dir():
            raise InvalidInput(
                f"the job directory {job_dir_key} is not visible on this worker under "
                f"{self.root}: mount the studio's shared data directory and pass it as --data-dir"
            )
        output = self.path_for(output_key)
        output.parent.mkdir(parents=True, exist_ok=True)
        return job_dir, output

    def publish(self, output_key: str, output: Path) -> None:
        if output.is_file():
            _fsync(output)
            _fsync_dir(output.parent)


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
