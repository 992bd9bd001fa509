"""``python app.py run`` end to end in a real subprocess: exit codes, one-line errors, outputs."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.imageio import load_image
from tests.assets import REPO, T1, TOM_HANKS


def run_cli(*args: str | Path, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "app.py"),
            "run",
            "--data-dir",
            str(data_dir),
            "--quiet",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )


def verify_json(path: Path, data_dir: Path) -> dict:
    """``app.py verify --json`` on a file, as this installation."""
    import json

    proc = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "verify", str(path), "--json",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def small_target(tmp_path) -> Path:
    """The left half of t1.jpg: three faces, quicker than the full photo."""
    path = tmp_path / "target.jpg"
    Image.open(T1).crop((0, 0, 640, 886)).save(path, quality=95)
    return path


def test_image_swap_succeeds(tmp_path, small_target):
    out = tmp_path / "out.png"
    proc = run_cli(
        "--source",
        TOM_HANKS,
        "--target",
        small_target,
        "--output",
        out,
        "--selector",
        "many",
        data_dir=tmp_path / "data",
    )
    assert proc.returncode == 0, proc.stderr
    assert "classic" in proc.stdout and "mtcnn" in proc.stdout
    before = load_image(small_target).astype(int)
    after = load_image(out).astype(int)
    assert after.shape == before.shape
    assert np.abs(after - before).max() > 50


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_text("not an image at all"), "not a supported image"),
        (lambda p: p.write_bytes(T1.read_bytes()[:20_000]), "truncated"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(_gif_bytes()), "GIF"),
        (lambda p: p.write_bytes(_bomb_png()), "megapixels"),
    ],
    ids=["not-an-image", "truncated", "zero-bytes", "unsupported-format", "decompression-bomb"],
)
def test_bad_source_files(tmp_path, small_target, make, fragment):
    bad = tmp_path / "bad.jpg"
    make(bad)
    proc = run_cli(
        "--source",
        bad,
        "--target",
        small_target,
        "--output",
        tmp_path / "o.png",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "o.png").exists()


def test_bad_target_file(tmp_path):
    bad = tmp_path / "target.png"
    bad.write_bytes(T1.read_bytes()[:30_000])
    proc = run_cli(
        "--source",
        TOM_HANKS,
        "--target",
        bad,
        "--output",
        tmp_path / "o.png",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, "truncated")


def test_no_face_in_source_fails(tmp_path, small_target):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    proc = run_cli(
        "--source",
        blank,
        "--target",
        small_target,
        "--output",
        tmp_path / "o.png",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, "no face found in source image 1")


def test_no_face_in_target_copies_with_a_warning(tmp_path):
    wall = tmp_path / "wall.png"
    pixels = (np.random.default_rng(0).random((120, 160, 3)) * 40 + 100).astype(np.uint8)
    Image.fromarray(pixels).save(wall)
    out = tmp_path / "o.png"
    proc = run_cli(
        "--source", TOM_HANKS, "--target", wall, "--output", out, data_dir=tmp_path / "data"
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: no face found in the target" in proc.stderr
    assert np.array_equal(load_image(out), load_image(wall))


def test_output_in_missing_directory(tmp_path, small_target):
    proc = run_cli(
        "--source",
        TOM_HANKS,
        "--target",
        small_target,
        "--output",
        tmp_path / "nope" / "o.png",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, "does not exist")


def test_bad_options(tmp_path, small_target):
    proc = run_cli(
        "--source",
        TOM_HANKS,
        "--target",
        small_target,
        "--output",
        tmp_path / "o.png",
        "--swapper",
        "nonsense",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, "swapper must be one of")


def test_missing_model_names_the_manual_step(tmp_path, small_target):
    proc = run_cli(
        "--source",
        TOM_HANKS,
        "--target",
        small_target,
        "--output",
        tmp_path / "o.png",
        "--swapper",
        "inswapper_128",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, "inswapper_128")


def _gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_output_carries_all_three_provenance_layers(tmp_path, small_target):
    data_dir = tmp_path / "data"
    out = tmp_path / "out.png"
    proc = run_cli(
        "--source", TOM_HANKS, "--target", small_target, "--output", out, data_dir=data_dir
    )
    assert proc.returncode == 0, proc.stderr
    report = verify_json(out, data_dir)
    assert report["watermark"]["job_id"].startswith("cli-")
    assert report["metadata"]["digital_source_type"].endswith(
        "compositeWithTrainedAlgorithmicMedia"
    )
    assert report["c2pa"]["status"] == "trusted"


def test_content_gate_refuses_before_any_work(tmp_path, small_target):
    out = tmp_path / "out.png"
    proc = run_cli(
        "--source",
        TOM_HANKS,
        "--target",
        small_target,
        "--output",
        out,
        "--content-threshold",
        "0.0001",
        data_dir=tmp_path / "data",
    )
    assert_one_line_error(proc, "content policy")
    assert not out.exists()


def test_video_target_through_the_cli_is_swapped_and_marked(tmp_path):
    from tests.media import make_video

    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, fps=10, size=(320, 240))
    out = tmp_path / "out.mp4"
    data_dir = tmp_path / "data"
    proc = run_cli("--source", TOM_HANKS, "--target", clip, "--output", out, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "video, 10 frames" in proc.stdout
    report = verify_json(out, data_dir)
    assert report["c2pa"]["status"] == "trusted"
    assert report["watermark"]["job_id"].startswith("cli-")
