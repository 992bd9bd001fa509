"""Metadata that says "this is synthetic": IPTC DigitalSourceType in XMP, MP4 container tags.

Images get one XMP packet, written without touching the coded pixels:

- PNG: an ``iTXt`` chunk with keyword ``XML:com.adobe.xmp``, right after ``IHDR``;
- JPEG: an APP1 segment ``http://ns.adobe.com/xap/1.0/``, after the leading APPn segments;
- WebP: an ``XMP `` chunk (the file is converted to the extended ``VP8X`` layout).

The packet carries ``Iptc4xmpExt:DigitalSourceType`` =
``compositeWithTrainedAlgorithmicMedia`` and the output's original size, which
the watermark reader needs to scale a resized copy back.

Videos (MP4, MOV, M4V) carry the same facts as container tags. The default MP4
muxer drops custom keys; ``movflags=use_metadata_tags`` keeps them (as ``mdta``
keys). The video writer should pass :data:`MP4_MUXER_OPTIONS` and put
:func:`mp4_metadata_tags` into ``container.metadata`` before the first packet;
:func:`write_video_metadata` adds them afterwards by a stream-copy remux.

Every writer here works on whole files, writes a temporary file beside the
target and renames it, and must run *before* C2PA signing (which seals the bytes).
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from engine.atomic import write_atomic
from engine.errors import InvalidInput

DIGITAL_SOURCE_TYPE = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
)
SOFTWARE = "Fusion Studio"
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
FUSION_NS = "urn:fusion-studio:xmp:provenance:1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
MP4_MUXER_OPTIONS = {"movflags": "+use_metadata_tags"}
VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
MAX_XMP_BYTES = 1 << 20

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
_JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_TAG_SOURCE_TYPE = "digital_source_type"
_TAG_ORIGINAL_SIZE = "original_size"
_TAG_SOFTWARE = "software"


@dataclass(frozen=True)
class SyntheticMetadata:
    """What a file's metadata says about its origin (fields are None when absent)."""

    digital_source_type: str | None
    original_size: tuple[int, int] | None  # (width, height)
    software: str | None
    container: str | None  # "png-itxt" | "jpeg-app1" | "webp-xmp" | "mp4-tags" | None

    def as_dict(self) -> dict:
        return {
            "digital_source_type": self.digital_source_type,
            "synthetic": self.digital_source_type == DIGITAL_SOURCE_TYPE,
            "original_size": list(self.original_size) if self.original_size else None,
            "software": self.software,
            "container": self.container,
        }


NO_METADATA = SyntheticMetadata(None, None, None, None)


def xmp_packet(original_size: tuple[int, int] | None, software: str = SOFTWARE) -> bytes:
    """An XMP packet declaring the content synthetic, with the original size."""
    size_attrs = ""
    if original_size is not None:
        width, height = (int(v) for v in original_size)
        size_attrs = f'\n    fusion:OriginalWidth="{width}"\n    fusion:OriginalHeight="{height}"'
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n'
        '  <rdf:Description rdf:about=""\n'
        f'    xmlns:Iptc4xmpExt="{IPTC_EXT_NS}"\n'
        f'    xmlns:xmp="{XMP_NS}"\n'
        f'    xmlns:fusion="{FUSION_NS}"\n'
        f'    Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"\n'
        f"    xmp:CreatorTool={quoteattr(software)}{size_attrs}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def parse_xmp(packet: bytes, container: str | None = None) -> SyntheticMetadata:
    """Read our fields from an XMP packet; a packet that is not XML reads as empty."""
    if len(packet) > MAX_XMP_BYTES or b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return SyntheticMetadata(None, None, None, container)
    text = packet.decode("utf-8", errors="replace")
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return SyntheticMetadata(None, None, None, container)
    try:
        root = ElementTree.fromstring(text[start : end + len("</x:xmpmeta>")])
    except ElementTree.ParseError:
        return SyntheticMetadata(None, None, None, container)
    fields: dict[str, str] = {}
    wanted = {
        f"{{{IPTC_EXT_NS}}}DigitalSourceType": "source",
        f"{{{XMP_NS}}}CreatorTool": "software",
        f"{{{FUSION_NS}}}OriginalWidth": "width",
        f"{{{FUSION_NS}}}OriginalHeight": "height",
    }
    for description in root.iter(f"{{{RDF_NS}}}Description"):
        for name, key in wanted.items():
            if name in description.attrib:
                fields.setdefault(key, description.attrib[name])
        for child in description:
            key = wanted.get(child.tag)
            if key:
                value = child.attrib.get(f"{{{RDF_NS}}}resource") or (child.text or "").strip()
                fields.setdefault(key, value)
    return SyntheticMetadata(
        digital_source_type=fields.get("source"),
        original_size=_size(fields.get("width"), fields.get("height")),
        software=fields.get("software"),
        container=container,
    )


def image_container(data: bytes) -> str | None:
    """``png`` / ``jpeg`` / ``webp`` from a file's first bytes, or None."""
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def add_xmp(data: bytes, packet: bytes) -> bytes:
    """The same image bytes with ``packet`` as their only XMP (replacing any old one)."""
    kind = image_container(data)
    if kind == "png":
        return add_xmp_png(data, packet)
    if kind == "jpeg":
        return add_xmp_jpeg(data, packet)
    if kind == "webp":
        return add_xmp_webp(data, packet)
    raise InvalidInput("XMP metadata can be written to PNG, JPEG and WebP images only")


def add_xmp_png(data: bytes, packet: bytes) -> bytes:
    chunks = list(_png_chunks(data))
    if not chunks or chunks[0][0] != b"IHDR":
        raise InvalidInput("the PNG file has no IHDR chunk")
    body = _PNG_XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + packet  # no compression, no language
    out = [_PNG_SIGNATURE]
    for index, (kind, payload) in enumerate(chunks):
        if kind == b"iTXt" and payload.startswith(_PNG_XMP_KEYWORD + b"\x00"):
            continue
        out.append(_png_chunk(kind, payload))
        if index == 0:
            out.append(_png_chunk(b"iTXt", body))
    return b"".join(out)


def add_xmp_jpeg(data: bytes, packet: bytes) -> bytes:
    segment_body = _JPEG_XMP_HEADER + packet
    if len(segment_body) + 2 > 0xFFFF:
        raise InvalidInput("the XMP packet is too large for one JPEG segment")
    segments, rest = _jpeg_header_segments(data)
    kept = [
        (marker, body)
        for marker, body in segments
        if not (marker == 0xE1 and body.startswith(_JPEG_XMP_HEADER))
    ]
    insert_at = 0
    while insert_at < len(kept) and 0xE0 <= kept[insert_at][0] <= 0xE1:
        insert_at += 1  # after JFIF (APP0) and Exif (APP1), which readers expect first
    kept.insert(insert_at, (0xE1, segment_body))
    out = [b"\xff\xd8"]
    out += [struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body for marker, body in kept]
    out.append(rest)
    return b"".join(out)


def add_xmp_webp(data: bytes, packet: bytes) -> bytes:
    chunks = [(fourcc, body) for fourcc, body in _riff_chunks(data) if fourcc != b"XMP "]
    if not chunks:
        raise InvalidInput("the WebP file has no chunks")
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= 0x04  # XMP present
        chunks[0] = (b"VP8X", bytes(header))
    else:
        width, height, alpha = _webp_simple_info(chunks[0])
        flags = 0x04 | (0x10 if alpha else 0)
        vp8x = (
            bytes([flags, 0, 0, 0])
            + (width - 1).to_bytes(3, "little")
            + (height - 1).to_bytes(3, "little")
        )
        chunks.insert(0, (b"VP8X", vp8x))
    chunks.append((b"XMP ", packet))
    body = b"WEBP" + b"".join(_riff_chunk(fourcc, payload) for fourcc, payload in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def read_xmp(data: bytes) -> tuple[bytes | None, str | None]:
    """The XMP packet of image bytes and where it was found, or (None, None)."""
    kind = image_container(data)
    try:
        if kind == "png":
            for chunk_kind, payload in _png_chunks(data):
                if chunk_kind == b"iTXt" and payload.startswith(_PNG_XMP_KEYWORD + b"\x00"):
                    return _itxt_text(payload), "png-itxt"
        elif kind == "jpeg":
            for marker, body in _jpeg_header_segments(data)[0]:
                if marker == 0xE1 and body.startswith(_JPEG_XMP_HEADER):
                    return body[len(_JPEG_XMP_HEADER) :], "jpeg-app1"
        elif kind == "webp":
            for fourcc, body in _riff_chunks(data):
                if fourcc == b"XMP ":
                    return body, "webp-xmp"
    except (InvalidInput, struct.error, zlib.error):
        return None, None
    return None, None


def write_image_metadata(path: str | Path, original_size: tuple[int, int] | None) -> None:
    """Put the synthetic-media XMP into an image file in place (atomic rename)."""
    path = Path(path)
    data = path.read_bytes()
    write_atomic(path, add_xmp(data, xmp_packet(original_size)))


def mp4_metadata_tags(original_size: tuple[int, int] | None = None) -> dict[str, str]:
    """Container tags for an MP4/MOV output; needs :data:`MP4_MUXER_OPTIONS` to survive."""
    tags = {
        _TAG_SOURCE_TYPE: DIGITAL_SOURCE_TYPE,
        _TAG_SOFTWARE: SOFTWARE,
        "comment": "Synthetic media: faces replaced by a trained algorithm (Fusion Studio).",
    }
    if original_size is not None:
        tags[_TAG_ORIGINAL_SIZE] = f"{int(original_size[0])}x{int(original_size[1])}"
    return tags


def muxer_options(path: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Muxer options for a video output: ``movflags`` for MP4/MOV, merged with ``extra``."""
    options = dict(extra or {})
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:
        flags = options.get("movflags", "")
        if "use_metadata_tags" not in flags:
            if flags and not flags.startswith(("+", "-")):
                flags = "+" + flags
            options["movflags"] = flags + MP4_MUXER_OPTIONS["movflags"]
    return options


def read_video_metadata(path: str | Path) -> SyntheticMetadata:
    """Our container tags of a video file (any container PyAV opens)."""
    import av

    try:
        with av.open(str(path)) as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, OSError) as exc:
        raise InvalidInput(f"{Path(path).name}: cannot read the video container ({exc})") from None
    size = None
    if _TAG_ORIGINAL_SIZE in tags:
        width, _, height = tags[_TAG_ORIGINAL_SIZE].partition("x")
        size = _size(width, height)
    source = tags.get(_TAG_SOURCE_TYPE)
    return SyntheticMetadata(
        digital_source_type=source,
        original_size=size,
        software=tags.get(_TAG_SOFTWARE),
        container="mp4-tags" if source else None,
    )


def write_video_metadata(path: str | Path, original_size: tuple[int, int] | None) -> None:
    """Add the synthetic-media tags to a video by a stream-copy remux (no re-encoding)."""
    import av

    path = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        with av.open(str(path)) as source:
            options = muxer_options(path)
            with av.open(
                str(temp), "w", format=source.format.name.split(",")[0], options=options
            ) as out:
                out.metadata.update(
                    {k: v for k, v in source.metadata.items() if k not in _MUXER_OWNED}
                )
                out.metadata.update(mp4_metadata_tags(original_size))
                streams = {}
                for stream in source.streams:
                    if stream.type in ("video", "audio"):
                        streams[stream.index] = out.add_stream_from_template(stream)
                        streams[stream.index].metadata.update(stream.metadata)
                for packet in source.demux([source.streams[i] for i in streams]):
                    if packet.dts is None:
                        continue
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
        os.replace(temp, path)
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"{path.name}: cannot rewrite the video container ({exc})") from None
    finally:
        temp.unlink(missing_ok=True)


def read_metadata(path: str | Path) -> SyntheticMetadata:
    """Synthetic-media metadata of an image (XMP) or video (container tags)."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(16)
    if image_container(head):
        data = path.read_bytes()
        packet, where = read_xmp(data)
        return NO_METADATA if packet is None else parse_xmp(packet, where)
    return read_video_metadata(path)


_MUXER_OWNED = {"major_brand", "minor_version", "compatible_brands", "encoder"}


def _size(width: str | None, height: str | None) -> tuple[int, int] | None:
    try:
        size = (int(str(width).strip()), int(str(height).strip()))
    except (TypeError, ValueError):
        return None
    return size if size[0] > 0 and size[1] > 0 else None


def _png_chunks(data: bytes):
    if not data.startswith(_PNG_SIGNATURE):
        raise InvalidInput("not a PNG file")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        if len(payload) != length:
            raise InvalidInput("the PNG file is truncated")
        yield kind, payload
        pos += 12 + length
        if kind == b"IEND":
            return
    raise InvalidInput("the PNG file has no IEND chunk")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _itxt_text(payload: bytes) -> bytes:
    keyword_end = payload.index(b"\x00")
    compressed, method = payload[keyword_end + 1], payload[keyword_end + 2]
    rest = payload[keyword_end + 3 :]
    rest = rest[rest.index(b"\x00") + 1 :]  # language tag
    text = rest[rest.index(b"\x00") + 1 :]  # translated keyword
    if compressed:
        if method != 0:
            raise InvalidInput("unknown iTXt compression")
        inflater = zlib.decompressobj()
        text = inflater.decompress(text, MAX_XMP_BYTES)
    return text


def _jpeg_header_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Marker segments before the first non-APP/COM marker, and the bytes from there on."""
    if not data.startswith(b"\xff\xd8"):
        raise InvalidInput("not a JPEG file")
    pos, segments = 2, []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InvalidInput("the JPEG file has a damaged header")
        marker = data[pos + 1]
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            return segments, data[pos:]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segments.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    raise InvalidInput("the JPEG file is truncated")


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise InvalidInput("not a WebP file")
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    pos, chunks = 12, []
    while pos + 8 <= end:
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        if len(body) != size:
            raise InvalidInput("the WebP file is truncated")
        chunks.append((fourcc, body))
        pos += 8 + size + (size & 1)
    return chunks


def _riff_chunk(fourcc: bytes, body: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp_simple_info(chunk: tuple[bytes, bytes]) -> tuple[int, int, bool]:
    """Canvas width, height and alpha use of a simple (VP8 or VP8L) WebP."""
    fourcc, body = chunk
    if fourcc == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width = struct.unpack("<H", body[6:8])[0] & 0x3FFF
        height = struct.unpack("<H", body[8:10])[0] & 0x3FFF
        return width, height, False
    if fourcc == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise InvalidInput("the WebP file has an unknown layout")
