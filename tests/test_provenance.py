"""Provenance layers on real files: watermark, XMP / MP4 tags, C2PA manifests, verify."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import pywt

from engine.errors import InvalidInput, InvalidOptions
from engine.imageio import load_image, save_image
from engine.provenance import (
    DIGITAL_SOURCE_TYPE,
    apply_provenance,
    finish_file,
    format_report,
    metadata,
    mp4_metadata_tags,
    prepare_stamp,
    run_cli,
    verify_file,
    watermark,
    watermark_frame,
)
from engine.provenance.c2pa_sign import (
    ensure_credentials,
    load_credentials,
    read_manifest,
    sign_file,
)
from engine.provenance.payload import (
    JobTagRegistry,
    Payload,
    ensure_installation,
    job_for_payload,
    payload_for_job,
)
from tests.assets import TOM_HANKS
from tests.media import make_video, scene

PAYLOAD = bytes.fromhex("a1b2c3d4e5f6")


@pytest.fixture(scope="module")
def marked(t1) -> np.ndarray:
    return watermark.embed(t1, PAYLOAD)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


# --- payload and registry -------------------------------------------------------------


def test_payload_packs_installation_and_job_tags():
    payload = Payload(installation_tag=0xBEEF, job_tag=0x01234567)
    assert payload.to_bytes() == bytes.fromhex("beef01234567")
    assert Payload.from_bytes(payload.to_bytes()) == payload
    with pytest.raises(InvalidOptions):
        Payload(installation_tag=1 << 16, job_tag=0)
    with pytest.raises(InvalidInput):
        Payload.from_bytes(b"\x00" * 5)


def test_job_tags_are_stable_and_resolve_only_here(tmp_path):
    data = tmp_path / "data"
    first = payload_for_job(data, "job-1")
    assert payload_for_job(data, "job-1") == first  # idempotent
    second = payload_for_job(data, "job-2")
    assert second.job_tag != first.job_tag
    assert ensure_installation(data).tag == first.installation_tag == second.installation_tag
    assert job_for_payload(data, first) == "job-1"
    assert (
        job_for_payload(data, Payload(first.installation_tag, (first.job_tag + 1) % 2**32)) is None
    )
    assert job_for_payload(tmp_path / "elsewhere", first) is None
    JobTagRegistry(data).forget("job-1")
    assert job_for_payload(data, first) is None


# --- watermark ------------------------------------------------------------------------


def test_haar_band_is_the_pywavelets_dwt():
    luma = np.random.default_rng(3).random((48, 64)).astype(np.float32) * 255
    np.testing.assert_allclose(watermark._haar_ll(luma), pywt.dwt2(luma, "haar")[0], atol=1e-3)


def test_watermark_round_trip_on_a_fresh_image(t1, marked):
    assert marked.shape == t1.shape and marked.dtype == np.uint8
    assert watermark.extract(marked) == PAYLOAD
    assert watermark.psnr(t1, marked) > 38.0


def test_watermark_survives_jpeg_quality_80(marked):
    assert watermark.extract(_jpeg(marked, 80)) == PAYLOAD


def test_watermark_survives_half_size_when_scaled_back(marked):
    height, width = marked.shape[:2]
    half = cv2.resize(marked, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    assert watermark.extract(half, original_size=(width, height)) == PAYLOAD
    # and the same after a JPEG q80 of the half-size copy
    assert watermark.extract(_jpeg(half, 80), original_size=(width, height)) == PAYLOAD


def test_unmarked_images_report_no_payload(t1):
    rng = np.random.default_rng(7)
    unmarked = [
        t1,
        load_image(TOM_HANKS),
        np.full((240, 320, 3), 128, np.uint8),
        rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        _jpeg(t1, 80),
    ]
    for image in unmarked:
        assert watermark.extract(image) is None


def test_watermark_with_an_int_payload_and_a_small_image():
    small = load_image(TOM_HANKS)  # 112x112: one copy of most bits
    marked = watermark.embed(small, 0x1234_5678_9ABC)
    assert watermark.extract(marked) == bytes.fromhex("123456789abc")


def test_watermark_refuses_bad_input():
    with pytest.raises(InvalidInput, match="too small"):
        watermark.embed(np.zeros((40, 40, 3), np.uint8), PAYLOAD)
    with pytest.raises(InvalidOptions, match="6 bytes"):
        watermark.embed(np.zeros((200, 200, 3), np.uint8), b"abc")
    with pytest.raises(InvalidOptions):
        watermark.embed(np.zeros((200, 200, 3), np.uint8), 1 << 48)
    with pytest.raises(InvalidInput):
        watermark.embed(np.zeros((200, 200), np.uint8), PAYLOAD)
    assert watermark.extract(np.zeros((40, 40, 3), np.uint8)) is None


# --- metadata -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_image_xmp_is_written_and_pixels_are_untouched(tmp_path, t1, suffix):
    path = save_image(t1, tmp_path / f"out{suffix}")
    pixels = cv2.imread(str(path))
    metadata.write_image_metadata(path, (1280, 886))
    found = metadata.read_metadata(path)
    assert found.digital_source_type == DIGITAL_SOURCE_TYPE
    assert found.original_size == (1280, 886)
    assert np.array_equal(cv2.imread(str(path)), pixels)
    # A second write replaces the packet rather than adding another.
    metadata.write_image_metadata(path, (640, 443))
    assert metadata.read_metadata(path).original_size == (640, 443)
    assert path.read_bytes().count(b"compositeWithTrainedAlgorithmicMedia") == 1
    # Other readers see the XMP too.
    from PIL import Image

    with Image.open(path) as image:
        assert b"compositeWithTrainedAlgorithmicMedia" in _as_bytes(image.info.get("xmp"))


def _as_bytes(value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value or b"")


def test_an_image_without_xmp_reads_as_no_declaration(tmp_path, t1):
    path = save_image(t1, tmp_path / "plain.png")
    assert metadata.read_metadata(path).digital_source_type is None


def test_mp4_tags_survive_with_the_muxer_flag(tmp_path):
    path = tmp_path / "tagged.mp4"
    with av.open(str(path), "w", options=metadata.muxer_options(path)) as out:
        out.metadata.update(mp4_metadata_tags((320, 240)))
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(5):
            out.mux(
                stream.encode(
                    av.VideoFrame.from_ndarray(scene(index, 5, (320, 240)), format="bgr24")
                )
            )
        out.mux(stream.encode(None))
    found = metadata.read_video_metadata(path)
    assert found.digital_source_type == DIGITAL_SOURCE_TYPE and found.original_size == (320, 240)


def test_mp4_tags_added_by_remux_keep_streams(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=1, fps=10, size=(160, 120))
    assert metadata.read_video_metadata(video).digital_source_type is None
    frames_before = _frame_count(video)
    metadata.write_video_metadata(video, (160, 120))
    assert metadata.read_video_metadata(video).digital_source_type == DIGITAL_SOURCE_TYPE
    with av.open(str(video)) as container:
        assert len(container.streams.audio) == 1
    assert _frame_count(video) == frames_before


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# --- C2PA -----------------------------------------------------------------------------


def test_credentials_are_made_once_with_private_keys_kept_private(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    assert load_credentials(tmp_path) is None
    creds = ensure_credentials(tmp_path)
    assert ensure_credentials(tmp_path) == creds
    for name in ("c2pa-root.key", "c2pa-signer.key"):
        assert (creds.directory / name).stat().st_mode & 0o777 == 0o600
    root = x509.load_pem_x509_certificate(creds.root_cert_pem.encode())
    leaf = x509.load_pem_x509_certificate(creds.signer_cert_pem.encode())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert leaf.issuer == root.subject
    root.public_key().verify(
        leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm)
    )
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_c2pa_is_trusted_when_fresh_and_invalid_after_one_pixel_byte_changes(tmp_path, t1, suffix):
    data = tmp_path / "data"
    output = save_image(t1, tmp_path / f"out{suffix}")
    apply_provenance(output, "image", data, "job-42")
    report = verify_file(output, data)
    assert report["c2pa"]["status"] == "trusted", report["c2pa"]
    assert report["c2pa"]["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert report["metadata"]["digital_source_type"] == DIGITAL_SOURCE_TYPE

    raw = bytearray(output.read_bytes())
    position = _pixel_data_offset(bytes(raw))
    raw[position] ^= 0x01
    output.write_bytes(bytes(raw))
    broken = verify_file(output, data)["c2pa"]
    assert broken["status"] == "invalid"
    assert "assertion.dataHash.mismatch" in broken["reason"]


def _pixel_data_offset(data: bytes) -> int:
    """A byte in the middle of the compressed pixels (PNG IDAT, JPEG scan), not a marker."""
    if data.startswith(b"\x89PNG"):
        pos = 8
        while True:
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            if data[pos + 4 : pos + 8] == b"IDAT":
                return pos + 8 + length // 2
            pos += 12 + length
    scan = data.index(b"\xff\xda")
    position = scan + (len(data) - scan) // 2
    while data[position] in (0xFF, 0xFE) or data[position - 1] == 0xFF:
        position += 1
    return position


def test_c2pa_from_another_installation_is_valid_not_trusted(tmp_path, t1):
    output = save_image(t1[:256, :256], tmp_path / "out.png")
    apply_provenance(output, "image", tmp_path / "theirs", "their-job")
    report = verify_file(output, tmp_path / "ours")
    assert report["c2pa"]["status"] == "valid"
    assert report["watermark"]["payload"]  # still readable
    assert report["watermark"]["job_id"] is None  # but the job is not ours


def test_anything_written_after_signing_invalidates_the_manifest(tmp_path, t1):
    data = tmp_path / "data"
    output = save_image(t1[:256, :256], tmp_path / "out.jpg")
    apply_provenance(output, "image", data, "job")
    metadata.write_image_metadata(output, (1, 1))  # wrong order: metadata after signing
    assert verify_file(output, data)["c2pa"]["status"] == "invalid"


def test_unsigned_and_unsupported_files_report_absent(tmp_path, t1):
    creds = ensure_credentials(tmp_path)
    plain = save_image(t1[:128, :128], tmp_path / "plain.png")
    assert read_manifest(plain, creds.root_cert_pem).status == "absent"
    bmp = tmp_path / "image.bmp"
    cv2.imwrite(str(bmp), t1[:128, :128])
    assert sign_file(bmp, creds) is False
    report = read_manifest(bmp, creds.root_cert_pem)
    assert report.status == "absent" and "does not support" in report.reason


# --- the whole chain ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_pipeline_order_watermark_encode_metadata_sign(tmp_path, t1, suffix):
    """What the job pipeline does: mark pixels, encode once, then finish_file."""
    data = tmp_path / "data"
    stamp = prepare_stamp(data, "job-pipeline")
    output = save_image(watermark_frame(t1, stamp), tmp_path / f"out{suffix}")
    assert finish_file(output, "image", stamp) is True
    report = verify_file(output, data)
    assert report["watermark"]["payload"] == stamp.payload.hex
    assert report["watermark"]["job_id"] == "job-pipeline"
    assert report["metadata"]["original_size"] == [1280, 886]
    assert report["c2pa"]["status"] == "trusted"
    assert report["c2pa"]["watermark_payload"] == stamp.payload.hex


def test_verify_reads_a_resized_copy_through_the_recorded_size(tmp_path, t1):
    data = tmp_path / "data"
    output = save_image(t1, tmp_path / "out.jpg", quality=92)
    apply_provenance(output, "image", data, "job-resize")
    half = cv2.resize(load_image(output), (640, 443), interpolation=cv2.INTER_AREA)
    copy = save_image(half, tmp_path / "copy.jpg", quality=80)
    metadata.write_image_metadata(copy, (1280, 886))  # a copy that kept the XMP
    report = verify_file(copy, data)
    assert report["watermark"]["job_id"] == "job-resize"
    assert report["c2pa"]["status"] == "absent"


def test_video_output_carries_all_three_layers(tmp_path):
    data = tmp_path / "data"
    video = make_video(tmp_path / "out.mp4", seconds=2, fps=10, size=(320, 240), gop=10)
    events = []
    result = apply_provenance(video, "video", data, "job-video", progress=events.append)
    assert result.signed and result.reencoded
    assert any(event.stage == "watermark" and event.done == 20 for event in events)
    report = verify_file(video, data)
    assert report["kind"] == "video"
    assert report["watermark"]["job_id"] == "job-video"
    assert report["watermark"]["frames_checked"] >= 1  # the re-encode's keyframes
    assert report["metadata"]["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert report["c2pa"]["status"] == "trusted"
    with av.open(str(video)) as container:
        assert len(container.streams.audio) == 1
        assert container.metadata.get("digital_source_type") == DIGITAL_SOURCE_TYPE
    assert _frame_count(video) == 20


def test_video_marked_per_frame_by_the_encoder(tmp_path):
    """The intended video path: the writer marks each frame and sets the tags itself."""
    data = tmp_path / "data"
    stamp = prepare_stamp(data, "job-writer")
    path = tmp_path / "out.mp4"
    with av.open(
        str(path), "w", options=metadata.muxer_options(path, {"movflags": "+faststart"})
    ) as out:
        out.metadata.update(mp4_metadata_tags((320, 240)))
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        # Several keyframes (a job's video has one per segment): the verifier averages
        # keyframes, and a single 320x240 keyframe misreads about 5% of payloads.
        stream.options = {"crf": "20", "preset": "veryfast", "g": "5"}
        for index in range(25):
            frame = watermark_frame(scene(index, 25, (320, 240)), stamp)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode(None))
    size_before = os.path.getsize(path)
    assert finish_file(path, "video", stamp) is True
    assert os.path.getsize(path) > size_before  # the manifest went in
    report = verify_file(path, data)
    assert report["watermark"]["job_id"] == "job-writer"
    assert report["c2pa"]["status"] == "trusted"


def test_verify_cli_prints_one_json_object(tmp_path, t1, capsys):
    data = tmp_path / "data"
    output = save_image(t1[:300, :400], tmp_path / "out.png")
    apply_provenance(output, "image", data, "job-cli")
    assert run_cli(output, data, as_json=True) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {"watermark", "metadata", "c2pa"}
    assert printed["watermark"]["job_id"] == "job-cli"
    assert printed["c2pa"]["status"] in {"trusted", "valid", "invalid", "absent"}
    assert run_cli(output, data) == 0
    text = capsys.readouterr().out
    assert "job-cli" in text and "C2PA: trusted" in text
    assert "\n" in format_report(printed)


def test_verify_unmarked_and_bad_files(tmp_path, t1, capsys):
    plain = save_image(t1[:300, :400], tmp_path / "plain.jpg")
    report = verify_file(plain, tmp_path / "data")
    assert report["watermark"] is None
    assert report["metadata"]["digital_source_type"] is None
    assert report["c2pa"]["status"] == "absent"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert run_cli(junk, tmp_path / "data", as_json=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    with pytest.raises(InvalidInput, match="not found"):
        verify_file(tmp_path / "missing.png", tmp_path / "data")


def test_an_unmarked_video_reports_nothing(tmp_path):
    video = make_video(tmp_path / "plain.mp4", seconds=1, fps=10, size=(320, 240), gop=5)
    report = verify_file(video, tmp_path / "data")
    assert report["kind"] == "video"
    assert report["watermark"] is None
    assert report["metadata"]["digital_source_type"] is None
    assert report["c2pa"]["status"] == "absent"
