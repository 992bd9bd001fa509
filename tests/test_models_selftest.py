"""``python app.py models selftest``: the shipped photos, and the verdicts on stand-in
swappers whose behaviour is known, through ``run_selftest`` and the real CLI.

The stand-ins are UniFace-family files (MODELS-2.md §5.2: ``target`` and ``source``
f32 [1, 3, 256, 256], both aligned with ffhq_512 @256; the source is RGB /255, the
target RGB normalised with mean 0.5 / std 0.5; the output is mapped back by ×0.5 + 0.5).
Because the source face and the target crop share the template, a file whose output
is ``2·source − 1`` pastes exactly the source face: a perfect swap. The recognizer is
the pooled-crop ArcFace stand-in (same crop → same vector). They are installed through
the user catalogue (a subprocess cannot be handed a replaced registry), and in-process
also under their real catalogue names with their own checksums.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.detectors.mtcnn import MtcnnDetector
from engine.models.manager import ModelManager
from engine.models.selftest import run_selftest
from engine.runtime import SessionCache
from tests.assets import REPO
from tests.standins.arcface import make_arcface
from tests.standins.registry import install_standins

PHOTOS = REPO / "assets" / "selftest"
UNIFACE_SIZE = 256  # MODELS-2.md §5.2: uniface_256, target and source [1, 3, 256, 256]
RECOGNIZER = "standin_arcface"
EYE = np.eye(3)
ZERO = np.zeros((3, 3))


def make_uniface(path: Path, from_source: np.ndarray, from_target: np.ndarray, bias: float):
    """A UniFace-family stand-in: ``output`` = from_source·source + from_target·target +
    bias, mixing the RGB channels with 3×3 matrices (1×1 convolutions)."""
    size = UNIFACE_SIZE
    inits = [
        numpy_helper.from_array(np.asarray(from_source, np.float32).reshape(3, 3, 1, 1), "ws"),
        numpy_helper.from_array(np.asarray(from_target, np.float32).reshape(3, 3, 1, 1), "wt"),
        numpy_helper.from_array(np.full(3, bias, np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["source", "ws", "bias"], ["from_source"]),
        helper.make_node("Conv", ["target", "wt"], ["from_target"]),
        helper.make_node("Add", ["from_source", "from_target"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "uniface_standin",
        [
            helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, size, size]),
            helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 3, size, size]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# The source is RGB in [0, 1]; the output range is [−1, 1] (×0.5 + 0.5 maps it back).
PERFECT = (2 * EYE, ZERO, -1.0)  # the source face itself
UNCHANGED = (ZERO, EYE, 0.0)  # the normalised target, as it came in
SWAPPED_COLOURS = (2 * EYE[::-1], ZERO, -1.0)  # the source face with R and B swapped
STANDINS = {
    "perfect_uniface": PERFECT,
    "unchanged_uniface": UNCHANGED,
    "swapped_colours_uniface": SWAPPED_COLOURS,
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_catalogue(models_dir: Path, swappers: dict[str, tuple], recognizer: bool = True):
    """Stand-in files in ``models_dir`` and a catalogue.json naming them."""
    models_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, behaviour in swappers.items():
        path = make_uniface(models_dir / f"{name}.onnx", *behaviour)
        entries.append(
            {"name": name, "kind": "swapper", "family": "uniface", "file": path.name,
             "sha256": sha256(path), "licence": "MIT"}
        )  # fmt: skip
    if recognizer:
        path = make_arcface(models_dir / "standin_arcface.onnx")
        entries.append(
            {"name": RECOGNIZER, "kind": "recognizer", "family": "arcface", "file": path.name,
             "sha256": sha256(path)}
        )  # fmt: skip
    (models_dir / "catalogue.json").write_text(json.dumps(entries), encoding="utf-8")
    return models_dir


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("selftest") / "models", STANDINS)


@pytest.fixture(scope="module")
def results(models_dir):
    manager = ModelManager(models_dir)
    assert manager.warnings == []
    return {r.model: r for r in run_selftest(manager, recognizer=RECOGNIZER)}


def selftest_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "app.py"), "models", "selftest", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- the shipped photos ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut.jpg", "camera.jpg"])
def test_each_shipped_photo_is_a_colour_jpeg_with_one_face_for_mtcnn(name):
    path = PHOTOS / name
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image.shape == (512, 512, 3)
    faces = MtcnnDetector(SessionCache("cpu")).detect(image, 0.5)
    assert len(faces) == 1


def test_the_grey_photo_is_saved_with_three_equal_channels_and_the_readme_names_licences():
    image = cv2.imread(str(PHOTOS / "camera.jpg"), cv2.IMREAD_UNCHANGED).astype(int)
    assert np.abs(image[..., 0] - image[..., 2]).max() <= 2  # grey, up to JPEG rounding
    readme = (PHOTOS / "README.md").read_text(encoding="utf-8")
    for fact in ("astronaut.jpg", "public domain", "NASA", "camera.jpg", "CC0", "Lav Varshney"):
        assert fact in readme


# -- verdicts -----------------------------------------------------------------------------------


def test_a_swapper_that_pastes_the_source_face_passes(results):
    result = results["perfect_uniface"]
    assert result.passed, result.message
    # The result's face is the source's face, re-cropped: the pooled-crop embeddings agree.
    assert result.similarity_to_source > 0.9
    assert result.similarity_to_source > result.similarity_to_target


def test_a_swapper_that_returns_its_target_fails_closer_to_the_target(results):
    result = results["unchanged_uniface"]
    assert not result.passed
    assert result.similarity_to_target > 0.7
    assert result.similarity_to_target > result.similarity_to_source
    assert "closer to the target" in result.message


def test_swapped_colour_channels_score_below_the_correct_swap(results):
    wrong = results["swapped_colours_uniface"]
    right = results["perfect_uniface"]
    assert wrong.similarity_to_source < right.similarity_to_source - 0.1


def test_classic_is_skipped_unless_named(results, models_dir):
    assert list(results) == list(STANDINS)
    named = run_selftest(ModelManager(models_dir), ["classic"], recognizer=RECOGNIZER)
    assert [r.model for r in named] == ["classic"]
    assert named[0].similarity_to_source is not None


def test_the_threshold_separates_what_scores_above_it_from_what_scores_below(results, models_dir):
    right = results["perfect_uniface"].similarity_to_source
    wrong = results["swapped_colours_uniface"].similarity_to_source
    threshold = (right + wrong) / 2
    judged = run_selftest(
        ModelManager(models_dir),
        ["perfect_uniface", "swapped_colours_uniface"],
        threshold=threshold,
        recognizer=RECOGNIZER,
    )
    assert [r.passed for r in judged] == [True, False]
    assert "below the threshold" in judged[1].message


def test_real_catalogue_names_and_the_default_recognizer(tmp_path):
    """Stand-ins under uniface_256, inswapper_128 and arcface_w600k_r50 with their own
    checksums (the manager checks them as it checks downloads)."""
    models = tmp_path / "models"
    manager = install_standins(models, ("arcface_w600k_r50", "inswapper_128"))
    uniface = make_uniface(models / manager.spec("uniface_256").filename, *PERFECT)
    registry = dict(manager.registry)
    registry["uniface_256"] = dataclasses.replace(
        registry["uniface_256"], sha256=sha256(uniface), size=uniface.stat().st_size
    )
    verdicts = {r.model: r for r in run_selftest(ModelManager(models, registry))}
    assert set(verdicts) == {"inswapper_128", "uniface_256"}
    assert verdicts["uniface_256"].passed
    # The inswapper stand-in dims the target and adds a pattern: no source identity.
    assert not verdicts["inswapper_128"].passed


# -- the command line ---------------------------------------------------------------------------


def test_cli_table_and_exit_1_when_one_fails(models_dir):
    proc = selftest_cli("--models-dir", models_dir, "--recognizer", RECOGNIZER)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "TO", "SOURCE", "TO", "TARGET", "RESULT"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["perfect_uniface"][-1] == "PASS"
    assert rows["unchanged_uniface"][-1] == "FAIL"
    assert float(rows["perfect_uniface"][1]) > float(rows["perfect_uniface"][2])
    assert "0.35" in proc.stdout  # the default threshold is stated
    assert "unchanged_uniface: the result is closer to the target" in proc.stdout
    assert "selftest" in proc.stderr  # the progress bar


def test_cli_exit_0_and_json_for_one_passing_swapper(models_dir):
    proc = selftest_cli(
        "perfect_uniface", "--models-dir", models_dir, "--recognizer", RECOGNIZER, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["model"] == "perfect_uniface"
    assert result["passed"] is True
    assert result["similarity_to_source"] > result["similarity_to_target"]
    assert set(result) == {
        "model", "passed", "similarity_to_source", "similarity_to_target", "message"
    }  # fmt: skip


def test_cli_a_stricter_threshold_fails_a_passing_swapper(models_dir):
    proc = selftest_cli(
        "swapped_colours_uniface", "--models-dir", models_dir, "--recognizer", RECOGNIZER,
        "--threshold", "0.99", "--json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["passed"] is False
    assert "below the threshold 0.99" in result["message"]


def test_cli_a_named_model_that_is_not_installed(models_dir):
    proc = selftest_cli("inswapper_128", "--models-dir", models_dir, "--recognizer", RECOGNIZER)
    assert_one_line_error(
        proc, "inswapper_128 is not installed", "python app.py models download inswapper_128"
    )


def test_cli_a_named_model_that_is_not_a_swapper(models_dir):
    proc = selftest_cli(RECOGNIZER, "--models-dir", models_dir, "--recognizer", RECOGNIZER)
    assert_one_line_error(proc, f"{RECOGNIZER} is a recognizer model, not a swapper")


def test_cli_an_unknown_model(models_dir):
    proc = selftest_cli("no_such_swapper", "--models-dir", models_dir)
    assert_one_line_error(proc, "unknown model 'no_such_swapper'")


def test_cli_without_the_recognizer_names_it_and_the_download_command(tmp_path):
    models = write_catalogue(tmp_path / "models", {"perfect_uniface": PERFECT}, recognizer=False)
    proc = selftest_cli("--models-dir", models)
    assert_one_line_error(
        proc, "arcface_w600k_r50", "python app.py models download arcface_w600k_r50"
    )


def test_cli_without_any_swapper(tmp_path):
    models = write_catalogue(tmp_path / "models", {})
    proc = selftest_cli("--models-dir", models, "--recognizer", RECOGNIZER)
    assert_one_line_error(proc, "no swapper model is installed")


def test_cli_a_threshold_that_is_no_cosine_similarity(models_dir):
    proc = selftest_cli("--models-dir", models_dir, "--threshold", "1.5")
    assert_one_line_error(proc, "threshold", "1.5")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_photos_are_not_git_ignored():
    """They ship with the code (scikit-image, where they came from, is a dev dependency)."""
    for name in ("astronaut.jpg", "camera.jpg", "README.md"):
        check = subprocess.run(["git", "check-ignore", "-q", str(PHOTOS / name)], cwd=REPO)
        assert check.returncode == 1, f"{name} is git-ignored"
