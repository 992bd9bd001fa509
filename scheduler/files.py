"""Job directories: ``DATA_DIR/jobs/<id>/{inputs,outputs,work}``.

Inputs are copied in on submit under names the server chooses. A run writes
its output under a partial name private to that run (``outputs/.r<run>.<name>``);
only the run that still holds the job's lease renames it to the final name,
inside the store transaction that marks the job succeeded, so a job never has
two outputs and never a half-written one under its final name.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_EXT_RE = re.compile(r"^\.[a-z0-9]{1,8}$")
PARTIAL_PREFIX = ".r"
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One input to store: the name to store it under, its bytes or a path to copy.

    ``handed_over``: the caller gives the file at ``data`` up (a private temporary
    upload it deletes next), so it is hard-linked into the job instead of copied:
    no second copy of a large video. Falls back to a copy across file systems.
    """

    name: str
    data: bytes | Path
    handed_over: bool = False


def safe_extension(original: str, default: str = ".bin") -> str:
    """A short lower-case extension from an uploaded name, or ``default``."""
    suffix = Path(original.replace("\\", "/")).suffix.lower()
    return suffix if _EXT_RE.match(suffix) else default


class JobFiles:
    """The files of all jobs under one root (``DATA_DIR/jobs``)."""

    def __init__(self, root: Path, durable: bool = True) -> None:
        self.root = Path(root)
        self.durable = durable
        self.root.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        if not _ID_RE.match(job_id):
            raise InvalidInput(f"malformed job id {job_id!r}")
        return self.root / job_id

    def inputs_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "inputs"

    def outputs_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "outputs"

    def work_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "work"

    def output_path(self, job_id: str, name: str) -> Path:
        return self.outputs_dir(job_id) / name

    def partial_output(self, job_id: str, run: int, name: str) -> Path:
        """Where run ``run`` writes its output; the extension is kept for the writer."""
        return self.outputs_dir(job_id) / f"{PARTIAL_PREFIX}{run}.{name}"

    # -- inputs -----------------------------------------------------------------------

    def store_inputs(self, job_id: str, files: list[InputFile]) -> tuple[int, tuple[Path, ...]]:
        """Copy inputs into the job directory. Returns their total size and the paths to
        fsync for them to be durable (the store syncs those with the job's commit)."""
        directory = self.inputs_dir(job_id)
        directory.mkdir(parents=True, exist_ok=False)
        self.outputs_dir(job_id).mkdir()
        total = 0
        written = []
        for item in files:
            if "/" in item.name or item.name.startswith("."):
                raise InvalidInput(f"unsafe stored name {item.name!r}")
            total += self._write_input(directory / item.name, item.data, item.handed_over)
            written.append(directory / item.name)
        sync = (*written, directory, self.job_dir(job_id), self.root) if self.durable else ()
        return total, sync

    def _write_input(self, path: Path, data: bytes | Path, handed_over: bool = False) -> int:
        if handed_over and isinstance(data, Path):
            try:
                os.link(data, path)
                return path.stat().st_size
            except OSError:  # another file system, or links not supported: copy
                pass
        with path.open("xb") as out:
            if isinstance(data, bytes | bytearray | memoryview):
                out.write(data)
                return len(data)
            size = 0
            with Path(data).open("rb") as source:
                while chunk := source.read(COPY_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            return size

    # -- outputs ----------------------------------------------------------------------

    def prepare_run(self, job_id: str, run: int) -> None:
        """A clean ``outputs/`` for run ``run``: earlier runs' partial outputs go.

        ``work/`` stays: it holds the video segments earlier runs finished, each recorded
        under a key of its inputs, options and models (``engine.video.SegmentManifest``),
        so a run after a crash resumes from them instead of processing them again. It
        goes when the job ends (``clean_partials``). A task that needs it creates it."""
        if run > 1:
            self._remove_partial_outputs(job_id)
        os.makedirs(self.outputs_dir(job_id), exist_ok=True)

    def has_partials(self, job_id: str) -> bool:
        """Whether ``clean_partials`` has anything to do (cheap: two directory lookups)."""
        job_dir = os.path.join(self.root, job_id)
        if os.path.isdir(os.path.join(job_dir, "work")):
            return True
        try:
            return any(name[0] == "." for name in os.listdir(os.path.join(job_dir, "outputs")))
        except FileNotFoundError:
            return False

    def sync_partial(self, job_id: str, run: int, name: str) -> int:
        """Make run ``run``'s partial output durable before it is published; its size.

        Raises ``FileNotFoundError`` when the run wrote no output.
        """
        partial = self.partial_output(job_id, run, name)
        if self.durable:
            with partial.open("rb") as handle:
                os.fsync(handle.fileno())
        return partial.stat().st_size

    def publish_output(self, job_id: str, run: int, name: str) -> None:
        """Rename run ``run``'s partial output to the final name (atomic: ``os.replace``).

        Called inside the store transaction that marks the job succeeded, so even a
        job re-run after a crash between this rename and the commit ends with exactly
        one output file. The store fsyncs ``outputs/`` with that commit.
        """
        os.replace(self.partial_output(job_id, run, name), self.output_path(job_id, name))

    def clean_run(self, job_id: str, run: int) -> None:
        """Remove what run ``run`` left in ``outputs/`` (its partial output and the
        writer's temporary files), before the job's failure or cancel is recorded."""
        outputs = os.path.join(self.root, job_id, "outputs")
        mine = (f"{PARTIAL_PREFIX}{run}.", f".{PARTIAL_PREFIX}{run}.")
        try:
            names = os.listdir(outputs)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(mine):
                _remove(Path(outputs) / name)

    def clean_partials(self, job_id: str) -> None:
        """Remove every partial output and the work directory of a job."""
        self._remove_partial_outputs(job_id)
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def _remove_partial_outputs(self, job_id: str) -> None:
        outputs = self.outputs_dir(job_id)
        if outputs.is_dir():
            for path in outputs.iterdir():
                if path.name.startswith("."):
                    _remove(path)

    def remove_inputs(self, job_id: str) -> None:
        """Delete a job's inputs and work files (content the gate refused is not kept)."""
        shutil.rmtree(self.inputs_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def outputs(self, job_id: str) -> list[Path]:
        """Final output files (partial ones excluded)."""
        outputs = self.outputs_dir(job_id)
        if not outputs.is_dir():
            return []
        return sorted(p for p in outputs.iterdir() if not p.name.startswith("."))

    # -- whole jobs -------------------------------------------------------------------

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def job_ids(self) -> list[str]:
        """Ids of every job directory on disk (including orphans without a row)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _ID_RE.match(p.name))

    def disk_usage(self, job_id: str) -> int:
        total = 0
        for path in self.job_dir(job_id).rglob("*"):
            if path.is_file():
                total += path.stat().st_size
        return total


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
