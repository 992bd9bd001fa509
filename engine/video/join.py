"""Joining segment files into the output without re-encoding, with the source's audio.

Timestamps come from the source, not from the segment files: segment k's
frames are, in presentation order, frames ``offset_k …`` of the planned range,
so each packet gets exactly the source timestamp of the frame it holds (this
is how variable frame rate survives). Decode timestamps are rebuilt as one
monotonic series for the whole output (the sorted presentation times, shifted
by the largest reordering delay), which is valid across segment borders
whatever the encoder's B-frame settings.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.errors import EngineError, InvalidOptions
from engine.imageio import check_output_dir
from engine.options import OutputOptions
from engine.progress import CancelToken, ProgressCallback
from engine.video.audio import AudioTrack
from engine.video.encode import partial_name
from engine.video.formats import OutputFormat, output_format
from engine.video.probe import Timeline, VideoInfo, probe, video_stream
from engine.video.progressmeter import ProgressMeter
from engine.video.segments import cuts_clip, output_range


def check_output(output: Path, target: Path, options: OutputOptions) -> OutputFormat:
    """Validate the output path and format before any work."""
    fmt = output_format(output, options)
    check_output_dir(output)
    if output.exists() and output.resolve() == Path(target).resolve():
        raise InvalidOptions(f"{output.name}: the output would overwrite the target video")
    return fmt


@dataclass
class _SegmentScan:
    path: Path
    count: int
    ranks: np.ndarray  # presentation rank of each packet, in decode order


class SegmentPackets:
    """Video packets of the segment files with the source's timestamps restored."""

    def __init__(
        self,
        paths: Sequence[Path],
        timeline: Timeline,
        first: int,
        end: int,
        codec: str,
    ) -> None:
        if not paths:
            raise EngineError("no segment files to join")
        self.paths = [Path(p) for p in paths]
        self.timeline = timeline
        self.first, self.end = first, end
        self.origin = int(timeline.pts[first])
        self.scans = [self._scan(path, codec) for path in self.paths]
        total = sum(scan.count for scan in self.scans)
        if total != end - first:
            raise EngineError(
                f"the segments hold {total} frames but the video range has {end - first}; "
                "they were made from a different plan or are incomplete"
            )
        self.shift = self._reorder_shift()
        self._container = av.open(str(self.paths[0]))
        self.template = self._container.streams.video[0]

    def _scan(self, path: Path, codec: str) -> _SegmentScan:
        if not path.is_file():
            raise EngineError(f"segment file {path.name} is missing")
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.codec_context.name != codec:
                raise EngineError(
                    f"segment {path.name} holds {stream.codec_context.name} video, "
                    f"but the output asks for {codec}"
                )
            stamps = [p.pts for p in container.demux(stream) if p.size]
        rel = np.asarray(stamps, dtype=np.int64)
        ranks = np.empty(len(rel), dtype=np.int64)
        ranks[np.argsort(rel, kind="stable")] = np.arange(len(rel))
        return _SegmentScan(path=path, count=len(rel), ranks=ranks)

    def _presentation(self, index: int) -> int:
        """Output pts of frame ``index`` of the range."""
        return self.timeline.pts_at(self.first + index) - self.origin

    def _reorder_shift(self) -> int:
        shift, offset = 0, 0
        pts = self.timeline.pts[self.first : self.end] - self.origin
        for scan in self.scans:
            decode_order = np.arange(offset, offset + scan.count)
            shown = pts[offset + scan.ranks]
            shift = max(shift, int(np.max(pts[decode_order] - shown)))
            offset += scan.count
        return shift

    def packets(self) -> Iterator[av.Packet]:
        offset = 0
        time_base = self.timeline.time_base
        last = self.end - self.first - 1
        for scan in self.scans:
            with av.open(str(scan.path)) as container:
                stream = container.streams.video[0]
                position = 0
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    frame = offset + int(scan.ranks[position])
                    decode_index = offset + position
                    pts = self._presentation(frame)
                    packet.pts = pts
                    packet.dts = self._presentation(decode_index) - self.shift
                    if decode_index == last:
                        packet.duration = self._presentation(last + 1) - self._presentation(last)
                    else:
                        packet.duration = self._presentation(frame + 1) - pts
                    packet.time_base = time_base
                    position += 1
                    yield packet
            offset += scan.count

    def close(self) -> None:
        self._container.close()


class SourcePackets:
    """The source's own video packets (used when no frame changed: the output is a copy)."""

    def __init__(self, target: Path, timeline: Timeline) -> None:
        self._container = av.open(str(target))
        self.template = video_stream(self._container, target.name)
        self.origin = int(timeline.pts[0])

    def packets(self) -> Iterator[av.Packet]:
        for packet in self._container.demux(self.template):
            if not packet.size or packet.is_discard:
                continue
            if packet.pts is not None:
                packet.pts -= self.origin
            if packet.dts is not None:
                packet.dts -= self.origin
            yield packet

    def close(self) -> None:
        self._container.close()


def join_segments(
    target: str | Path,
    segment_paths: Sequence[str | Path],
    output: str | Path,
    options: OutputOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    *,
    info: VideoInfo | None = None,
) -> Path:
    """Concatenate encoded segments (in order) into ``output`` with the source's audio.

    No re-encoding of video; ``options`` gives the container, the output range
    (``segments.output_range``: the segments must have been planned with the same
    trim and ``trim_mode``) and ``keep_audio``. A ``.gif`` output is written from
    the decoded segments instead (``gif.write_gif``), without sound.
    The output appears under its name only when complete.
    """
    target, output = Path(target), Path(output)
    options.validate()
    fmt = check_output(output, target, options)
    info = info or probe(target)
    first, end = output_range(info.timeline, options, target.name)
    if fmt.is_gif:
        from engine.video.gif import write_gif

        paths = [Path(p) for p in segment_paths]
        return write_gif(target, paths, output, info, first, end, progress, cancel)
    video = SegmentPackets([Path(p) for p in segment_paths], info.timeline, first, end, fmt.codec)
    try:
        return write_output(target, output, fmt, video, info, options, first, end, progress, cancel)
    finally:
        video.close()


def copy_source(
    target: Path,
    output: Path,
    options: OutputOptions,
    info: VideoInfo,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Remux the source's video (and audio) unchanged into ``output``.

    A GIF output from a GIF source is a byte copy of the source."""
    fmt = check_output(output, target, options)
    if fmt.is_gif:
        return _copy_file(target, output, options, info)
    video = SourcePackets(target, info.timeline)
    try:
        return write_output(
            target, output, fmt, video, info, options, 0, info.frames, progress, cancel
        )
    finally:
        video.close()


def can_copy_source(info: VideoInfo, fmt: OutputFormat, options: OutputOptions) -> bool:
    """Whether the untouched source video can stand in for the re-encoded one.

    ``trim_mode=keep`` outputs the whole clip, so its trim does not prevent a copy."""
    if cuts_clip(options) or info.rotation != 0:
        return False
    if fmt.is_gif:
        return info.container == "gif"
    return info.codec == fmt.codec


def _copy_file(target: Path, output: Path, options: OutputOptions, info: VideoInfo) -> Path:
    if not can_copy_source(info, output_format(output, options), options):
        raise InvalidOptions(f"{target.name} cannot be copied as it is into {output.name}")
    temp = partial_name(output)
    try:
        shutil.copyfile(target, temp)
        os.replace(temp, output)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return output


def output_warnings(info: VideoInfo, fmt: OutputFormat, options: OutputOptions) -> list[str]:
    """What the output format changed about the video, for the job's warnings."""
    warnings = []
    if (info.width % 2 or info.height % 2) and not fmt.is_gif:
        warnings.append(
            f"the video is {info.width}x{info.height}; the output was padded by one pixel "
            "to even dimensions, as H.264/HEVC/VP9 4:2:0 video requires"
        )
    if fmt.is_gif and info.has_audio and options.keep_audio:
        warnings.append("a GIF holds no sound; the video's audio track was left out")
    return warnings


def write_output(
    target: Path,
    output: Path,
    fmt: OutputFormat,
    video: SegmentPackets | SourcePackets,
    info: VideoInfo,
    options: OutputOptions,
    first: int,
    end: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> Path:
    """Mux video packets and the audio track into a temporary file, then rename it."""
    timeline = info.timeline
    temp = partial_name(output)
    meter = ProgressMeter(end - first, progress)
    meter.stage("mux", message="joining segments and audio", done=0)
    container_options = {"movflags": "+faststart"} if fmt.container in ("mp4", "mov") else {}
    audio: AudioTrack | None = None
    try:
        with av.open(str(temp), mode="w", format=fmt.muxer, options=container_options) as out:
            stream = out.add_stream_from_template(video.template)
            stream.time_base = timeline.time_base
            if fmt.codec == "hevc" and fmt.container in ("mp4", "mov"):
                with contextlib.suppress(Exception):
                    stream.codec_tag = "hvc1"  # the tag Apple players require
            if options.keep_audio and info.has_audio:
                start = Fraction(timeline.pts_at(first)) * timeline.time_base
                stop = Fraction(timeline.pts_at(end)) * timeline.time_base
                trimmed = cuts_clip(options)
                audio = AudioTrack(target, out, fmt, start, stop if trimmed else None, trimmed)
            video_packets = _tagged(video.packets(), stream, 0)
            streams = [video_packets]
            if audio is not None:
                streams.append(_tagged(audio.packets(), audio.stream, 1))
            muxed = 0
            for _, _, packet in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
                if cancel is not None:
                    cancel.raise_if_canceled()
                out.mux(packet)
                if packet.stream is stream:
                    muxed += 1
                    if muxed % 50 == 0:
                        meter.stage("mux", done=muxed)
        os.replace(temp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    finally:
        if audio is not None:
            audio.close()
    meter.stage("mux", done=end - first)
    return output


def _tagged(
    packets: Iterator[av.Packet], stream, order: int
) -> Iterator[tuple[float, int, av.Packet]]:
    """Packets keyed by decode time (seconds) for interleaving, bound to the output stream."""
    for packet in packets:
        packet.stream = stream
        when = packet.dts if packet.dts is not None else packet.pts
        seconds = float(when * packet.time_base) if when is not None else 0.0
        yield seconds, order, packet
