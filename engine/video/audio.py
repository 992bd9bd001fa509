"""The first audio track of the source, carried into the output.

Copied packet for packet when the output container can hold its codec (no
quality loss, no CPU), otherwise decoded and re-encoded (AAC, or Opus for
WebM). Timestamps are shifted by the same origin as the video so that sound
and picture stay in sync; with a trim range, packets whose start falls inside
the range are kept (accurate to one audio packet, about 20 ms).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from engine.video.formats import OutputFormat
from engine.video.probe import first_audio_stream, open_input

OPUS_RATES = (48000, 24000, 16000, 12000, 8000)


class AudioTrack:
    """Adds an audio stream to ``output`` and yields its packets, ready to mux.

    ``start`` is the source time (seconds) that becomes 0 in the output and
    ``end`` the source time where the output stops (None: keep all the audio).
    """

    def __init__(
        self,
        target: Path,
        output: av.container.OutputContainer,
        fmt: OutputFormat,
        start: Fraction,
        end: Fraction | None,
        trimmed: bool,
    ) -> None:
        self.input = open_input(target)
        self.source = first_audio_stream(self.input)
        if self.source is None:
            self.input.close()
            raise ValueError("the target has no audio stream")
        for other in self.input.streams:
            if other.index != self.source.index:
                other.discard = av.stream.Discard.all
        self.start = Fraction(start)
        self.end = end
        self.trimmed = trimmed
        name = self.source.codec_context.name
        self.copy = fmt.can_copy_audio(name, output.supported_codecs)
        if self.copy:
            self.stream = output.add_stream_from_template(self.source)
        else:
            rate = self.source.codec_context.sample_rate or 48000
            if fmt.audio_encoder == "libopus" and rate not in OPUS_RATES:
                rate = 48000
            self.stream = output.add_stream(fmt.audio_encoder, rate=rate)
            layout = self.source.codec_context.layout
            channels = layout.nb_channels if layout is not None else 2
            self.stream.layout = layout.name if layout is not None and channels <= 2 else "stereo"
        self.reencoded = not self.copy

    def _keep(self, when: Fraction) -> bool:
        if not self.trimmed:
            return True
        return when >= self.start and (self.end is None or when < self.end)

    def packets(self) -> Iterator[av.Packet]:
        if self.copy:
            yield from self._copied()
        else:
            yield from self._reencoded()

    def _copied(self) -> Iterator[av.Packet]:
        time_base = self.source.time_base
        shift = round(self.start / time_base)
        for packet in self.input.demux(self.source):
            if packet.size == 0 or packet.pts is None:
                continue
            if not self._keep(packet.pts * time_base):
                continue
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self.stream
            yield packet

    def _reencoded(self) -> Iterator[av.Packet]:
        for frame in self.input.decode(self.source):
            if frame.pts is None or frame.time_base is None:
                continue
            when = frame.pts * frame.time_base
            if not self._keep(when):
                continue
            pts = round((when - self.start) * frame.sample_rate)
            if pts < 0:
                continue
            frame.pts = pts
            frame.time_base = Fraction(1, frame.sample_rate)
            yield from self.stream.encode(frame)
        yield from self.stream.encode(None)

    def close(self) -> None:
        self.input.close()
