"""Cutting a video into segments, and recording which segments are finished.

Segments are cut on frame indices (taken from the demuxed timestamps), so that
the join is frame-exact: each frame belongs to exactly one segment, whichever
process or device encodes it. A segment's output depends only on its own
frames and the options — each segment starts with a fresh processor state
(``FrameProcessor.fork``) and a fresh encoder — so a segment made after a crash,
or on another device, is the same as one made in an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.errors import InvalidOptions
from engine.options import OutputOptions
from engine.video.formats import SEGMENT_SUFFIX, encoder_settings
from engine.video.probe import Timeline, VideoInfo, probe

MANIFEST_NAME = "manifest.json"  # version 1 kept every record in this one file
MANIFEST_VERSION = 2
RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class Segment:
    """Frames ``start_frame <= i < end_frame`` of the video; ``*_pts`` bound them in time.

    ``origin_pts`` is the source timestamp that becomes time 0 in the output
    (the first frame of the output range), the same for every segment of a plan.
    """

    index: int
    start_frame: int
    end_frame: int
    start_pts: int
    end_pts: int
    origin_pts: int

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def file_name(self) -> str:
        return f"segment-{self.index:05d}{SEGMENT_SUFFIX}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Segment:
        return cls(**{key: int(data[key]) for key in cls.__dataclass_fields__})


def trim_range(timeline: Timeline, options: OutputOptions, name: str = "video") -> tuple[int, int]:
    """Frame indices ``[first, end)`` inside the trim range (seconds from the first frame).

    This is the *active* range: the frames given to the processor. With
    ``trim_mode=cut`` it is also the output range; see :func:`output_range`.
    """
    count = len(timeline)
    if options.trim_start is None and options.trim_end is None:
        return 0, count
    relative = (timeline.pts - timeline.pts[0]).astype(np.float64) * float(timeline.time_base)
    duration = timeline.seconds(count)
    first, end = 0, count
    if options.trim_start is not None:
        if options.trim_start >= duration:
            raise InvalidOptions(
                f"trim_start {options.trim_start:g} s is beyond the end of {name} "
                f"({duration:.2f} s long)"
            )
        first = int(np.searchsorted(relative, options.trim_start - 1e-9, side="left"))
    if options.trim_end is not None:
        end = int(np.searchsorted(relative, options.trim_end - 1e-9, side="left"))
    if end <= first:
        raise InvalidOptions(
            f"the trim range {options.trim_start or 0:g}–{options.trim_end:g} s holds no frame "
            f"of {name}"
        )
    return first, end


def cuts_clip(options: OutputOptions) -> bool:
    """Whether the output is only the trim range (a trim with ``trim_mode=cut``)."""
    trimmed = options.trim_start is not None or options.trim_end is not None
    return trimmed and options.trim_mode == "cut"


def output_range(
    timeline: Timeline, options: OutputOptions, name: str = "video"
) -> tuple[int, int]:
    """Frame indices ``[first, end)`` of the output: what is planned, encoded and joined.

    ``trim_mode=cut``: the trim range. ``keep``: the whole clip (the trim range is
    still checked, so a range holding no frame fails the same way in both modes).
    """
    active = trim_range(timeline, options, name)
    return active if options.trim_mode != "keep" else (0, len(timeline))


def plan_segments(info_or_path: VideoInfo | str | Path, options: OutputOptions) -> list[Segment]:
    """Cut the output range of the video into segments of about ``options.segment_seconds``.

    A cut falls on the first frame at or after each multiple of the segment
    length, never between two frames with the same timestamp.
    """
    options.validate()
    info = info_or_path if isinstance(info_or_path, VideoInfo) else probe(info_or_path)
    timeline = info.timeline
    first, end = output_range(timeline, options, info.path.name)
    pts = timeline.pts
    seconds = (pts[first:end] - pts[first]).astype(np.float64) * float(timeline.time_base)
    bucket = np.floor(seconds / options.segment_seconds + 1e-9).astype(np.int64)
    cuts = [first]
    for offset in np.flatnonzero(np.diff(bucket)) + 1:
        index = first + int(offset)
        if pts[index] > pts[index - 1]:
            cuts.append(index)
    cuts.append(end)
    origin = int(pts[first])
    return [
        Segment(
            index=number,
            start_frame=start,
            end_frame=stop,
            start_pts=int(pts[start]),
            end_pts=timeline.pts_at(stop),
            origin_pts=origin,
        )
        for number, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))
    ]


def contiguous_runs(segments: list[Segment]) -> list[list[Segment]]:
    """Group segments that follow each other, so one decoder can serve a whole run."""
    runs: list[list[Segment]] = []
    for segment in sorted(segments, key=lambda s: s.index):
        if runs and runs[-1][-1].end_frame == segment.start_frame:
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return runs


@dataclass(frozen=True)
class SegmentRecord:
    """A finished segment as recorded in the manifest."""

    index: int
    file: str
    frames: int
    frames_with_faces: int


def plan_key(
    target: Path, segments: list[Segment], codec: str, options: OutputOptions, processor: object
) -> str:
    """Identity of the work a manifest describes; a different key means start afresh."""
    stat = Path(target).stat()
    private, quantiser = encoder_settings(codec, options)
    description = {
        "target": [str(Path(target).resolve()), stat.st_size, stat.st_mtime_ns],
        "codec": codec,
        "encoder": [private, quantiser],
        "segments": [s.to_dict() for s in segments],
        "processor": describe_processor(processor),
    }
    if options.trim_mode == "keep" and (options.trim_start, options.trim_end) != (None, None):
        # The same segments as an untrimmed plan, but only the trim range is processed.
        description["keep"] = [options.trim_start, options.trim_end]
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_processor(processor: object) -> str:
    """What a processor does, as far as it tells: its options, models and source face.

    A processor (or a wrapper around one) may define ``fingerprint() -> str``;
    otherwise its ``options``, ``resolved`` models and ``source.image`` are used
    when present (``engine.pipeline.FrameSwapper`` has all three).
    """
    custom = getattr(processor, "fingerprint", None)
    if callable(custom):
        return str(custom())
    parts = []
    for attribute in ("options", "resolved"):
        value = getattr(processor, attribute, None)
        if value is not None:
            parts.append(repr(value))
    source = getattr(processor, "source", None)
    image = getattr(source, "image", None)
    if isinstance(image, np.ndarray):
        parts.append(hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest())
    return "|".join(parts)


class SegmentManifest:
    """The job's record of finished segments in its work directory.

    Each finished segment gets a record file of its own (``segment-00003.json``
    next to ``segment-00003.mp4``), written atomically (temporary file, fsync,
    rename) once the segment file is complete. One record per file lets several
    processes finish segments of the same job at once (a video split over
    devices) without overwriting each other's records, and lets a run on one
    slot resume what a split run left, and the other way round.

    A record whose key differs (other target, options, plan or models) is stale:
    it and its segment are deleted, so that segment starts afresh.
    """

    def __init__(self, workdir: Path, key: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = key
        self._lock = threading.Lock()
        self._records: dict[int, SegmentRecord] = {}
        (self.workdir / MANIFEST_NAME).unlink(missing_ok=True)  # the one-file format of v1
        self._load()

    def _load(self) -> None:
        for path in sorted(self.workdir.glob(f"segment-*{RECORD_SUFFIX}")):
            data = None
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
            record = None
            if (
                isinstance(data, dict)
                and data.get("version") == MANIFEST_VERSION
                and data.get("key") == self.key
            ):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    record = SegmentRecord(**data["record"])
            if record is not None and (self.workdir / record.file).is_file():
                self._records[record.index] = record
                continue
            path.unlink(missing_ok=True)
            path.with_suffix(SEGMENT_SUFFIX).unlink(missing_ok=True)

    def remove_partials(self) -> None:
        """Partial segment files whose writer is gone (a killed process's leftovers).

        A partial's name carries its writer's pid; files of live writers (another
        segment of the same job, in another process) are left alone."""
        for partial in self.workdir.glob(f".segment-*.part*{SEGMENT_SUFFIX}"):
            pid = partial.stem.rsplit(".part", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
                partial.unlink(missing_ok=True)

    def finished(self, index: int) -> SegmentRecord | None:
        with self._lock:
            return self._records.get(index)

    @property
    def records(self) -> dict[int, SegmentRecord]:
        with self._lock:
            return dict(self._records)

    def record(self, record: SegmentRecord) -> None:
        data = {"version": MANIFEST_VERSION, "key": self.key, "record": asdict(record)}
        path = self.workdir / (Path(record.file).stem + RECORD_SUFFIX)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        with temp.open("w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        with self._lock:
            self._records[record.index] = record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
