"""The model catalogue and the model options end to end, through the public surfaces.

Real parts only: stand-in ONNX files with their families' tensors (MODELS-2.md §5.2,
§8, §9, §13) pinned in a user ``catalogue.json`` by their own real checksums, real
ONNX Runtime sessions, ``python app.py run`` / ``models list`` / ``verify`` as
subprocesses, and one studio server on 127.0.0.1 (started with ``--models-dir``, a
licence filter and work bounds) driven over REST with httpx.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from engine.imageio import load_image
from engine.models.manager import ModelManager
from engine.models.registry import REGISTRY
from engine.models.resolve import resolve, resolve_models
from engine.models.user_catalogue import CATALOGUE_FILE as CATALOGUE
from engine.options import SwapOptions
from engine.pipeline import FaceEngine
from tests.assets import REPO, T1, TOM_HANKS, load
from tests.live_studio import StudioProcess
from tests.media import decode_frames, make_video
from tests.standins.arcface import make_arcface
from tests.standins.catalogue import entry, sha256_of, write_catalogue
from tests.standins.enhancers import make_enhancer
from tests.standins.frame_enhancer import make_frame_enhancer
from tests.standins.inswapper import make_inswapper
from tests.standins.swapper_families import make_swapper

pytestmark = pytest.mark.timeout(600)

# MODELS-2.md §5.2: HyperSwap crops at 256 with mean/std 0.5 and gives [−1, 1] back.
HALF = (0.5, 0.5, 0.5)
HYPERSWAP_SIZE = 256
# MODELS-2.md §8: a face enhancer's output is in [−1, 1]; (x + 1) / 2 · 255 is the pixel.
ENHANCER_SIZE = 128
# MODELS-2.md §9: Real-ESRGAN ×2 maps a T×T tile to 2T×2T.
UPSCALE = 2
# The studio's bounds (its flags, below).
MAX_OUTPUT_MEGAPIXELS = 2.0
MAX_JOB_COST = 40.0
# The one face of the crop of t1.jpg used as a small target (x0, y0, x1, y1 in t1.jpg).
CROP = (800, 0, 1120, 320)


# -- the models directory -------------------------------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    """A models directory whose catalogue.json names stand-ins (and one bad entry)."""

    models_dir: Path
    files: dict[str, Path]


def _swapper(path: Path, curves: tuple[str, str, str]) -> Path:
    """A HyperSwap stand-in: the target crop through a per-channel curve, plus ``mask``."""
    return make_swapper(
        path,
        size=HYPERSWAP_SIZE,
        undo_mean=HALF,
        undo_std=HALF,
        out_mean=HALF,
        out_std=HALF,
        curves=curves,
        mask_output=True,
        batch=None,
    )


def _painter(path: Path, rgb: tuple[float, float, float], **kw) -> Path:
    """A face enhancer whose output is one colour (gain 0, offset ``rgb`` in [−1, 1])."""
    return make_enhancer(path, size=ENHANCER_SIZE, gain=(0.0, 0.0, 0.0), offset=rgb, **kw)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Catalogue:
    models_dir = tmp_path_factory.mktemp("models")
    custom = models_dir / "custom"
    custom.mkdir()
    files = {
        "my_arcface": make_arcface(custom / "my_arcface.onnx"),
        "myswap": _swapper(custom / "myswap.onnx", ("zero", "sqrt", "y2")),
        "myswap_crc": _swapper(custom / "myswap_crc.onnx", ("sqrt", "zero", "y2")),
        "bad": _swapper(custom / "bad.onnx", ("y", "y", "zero")),
        "red": _painter(custom / "red.onnx", (1.0, -1.0, -1.0)),
        "blue": _painter(custom / "blue.onnx", (-1.0, -1.0, 1.0)),
        "fidelity": _painter(custom / "fidelity.onnx", (1.0, 1.0, 1.0), weight=True),
        "upscale_x2": make_frame_enhancer(custom / "upscale_x2.onnx", scale=UPSCALE, tile=64),
    }
    d = models_dir
    entries = [
        entry(d, "my_arcface", "recognizer", "arcface", files["my_arcface"], licence="MIT"),
        entry(d, "myswap", "swapper", "hyperswap", files["myswap"],
              licence="Apache-2.0 (stand-in)", recognizer="my_arcface"),
        entry(d, "myswap_crc", "swapper", "hyperswap", files["myswap_crc"], check="crc32",
              licence="MIT", recognizer="my_arcface"),
        entry(d, "bad", "swapper", "hyperswap", files["bad"], wrong=True, licence="MIT",
              recognizer="my_arcface"),
        entry(d, "red", "enhancer", "gfpgan", files["red"], licence="Apache-2.0"),
        entry(d, "blue", "enhancer", "gfpgan", files["blue"], licence="Apache-2.0"),
        entry(d, "fidelity", "enhancer", "codeformer", files["fidelity"], licence="BSD-3-Clause"),
        entry(d, "upscale_x2", "frame_enhancer", "real_esrgan", files["upscale_x2"],
              licence="BSD-3-Clause"),
    ]  # fmt: skip
    write_catalogue(models_dir, entries)
    return Catalogue(models_dir, files)


@pytest.fixture(scope="module")
def studio(catalogue, tmp_path_factory) -> Iterator[StudioProcess]:
    """One studio for the module: the catalogue's models, permissive licences only, and
    work bounds low enough for a test photo to cross them."""
    args = [
        "--models-dir", str(catalogue.models_dir),
        "--licences", "permissive",
        "--max-output-megapixels", str(MAX_OUTPUT_MEGAPIXELS),
        "--max-job-cost", str(MAX_JOB_COST),
    ]  # fmt: skip
    process = StudioProcess(tmp_path_factory.mktemp("studio") / "data", args).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """PNG targets (lossless, so unchanged pixels compare exactly): t1.jpg whole, a crop
    with one face, and t1.jpg at half size."""
    folder = tmp_path_factory.mktemp("images")
    photo = load(T1)
    x0, y0, x1, y1 = CROP
    half = cv2.resize(
        photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA
    )
    paths = {"t1": folder / "t1.png", "crop": folder / "crop.png", "half": folder / "half.png"}
    cv2.imwrite(str(paths["t1"]), photo)
    cv2.imwrite(str(paths["crop"]), photo[y0:y1, x0:x1])
    cv2.imwrite(str(paths["half"]), half)
    return paths


# -- helpers ----------------------------------------------------------------------------------


def app(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "app.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def models_table(stdout: str) -> dict[str, list[str]]:
    """``models list`` rows by name (the custom mark included)."""
    return {line.split()[0]: line.split() for line in stdout.splitlines() if line.strip()}


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, and one ``error: …`` line, the last one; any line before it
    is the warning about the catalogue's bad entry (logged when the catalogue loads)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert all(CATALOGUE in line and "entry skipped" in line for line in lines[:-1]), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def api(process: StudioProcess) -> httpx.Client:
    return httpx.Client(base_url=process.url, timeout=120)


def submit(client: httpx.Client, target: Path, **options) -> httpx.Response:
    return client.post(
        "/api/v1/jobs",
        files=[
            ("source", ("me.png", TOM_HANKS.read_bytes())),
            ("target", (target.name, target.read_bytes())),
        ],
        data={"options": json.dumps({"consent": True, **options})},
    )


def finished(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def succeeded(client: httpx.Client, response: httpx.Response) -> dict:
    assert response.status_code == 202, response.text
    job = finished(client, response.json()["id"])
    assert job["status"] == "succeeded", job
    return job


def job_ids(client: httpx.Client) -> set[str]:
    return {job["id"] for job in client.get("/api/v1/jobs", params={"limit": 500}).json()["jobs"]}


def refused(response: httpx.Response, code: str, *fragments: str) -> str:
    """A 422 with our JSON error object; returns its message."""
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error["message"]


def result_image(client: httpx.Client, job: dict) -> np.ndarray:
    content = client.get(f"/api/v1/jobs/{job['id']}/result").content
    return cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)


def assert_one_face_changed(before: np.ndarray, after: np.ndarray) -> None:
    """Pixels changed strongly in one face, and by no more than the provenance watermark's
    faint noise (a few levels) anywhere outside that face's patch."""
    assert after.shape == before.shape
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=2)
    assert np.count_nonzero(diff > 20) > 3000, "the face was not changed"
    ys, xs = np.nonzero(diff > 10)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    assert x1 - x0 < 300 and y1 - y0 < 300, (x0, y0, x1, y1)  # one face, not the frame
    outside = np.ones(diff.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert diff[outside].mean() < 1.0


def nose(engine: FaceEngine, image: np.ndarray) -> tuple[int, int]:
    """The nose tip (x, y) of the largest face: where every face mask is 1."""
    face = engine.detect(image)[0]
    x, y = face.landmarks[2]
    return int(round(x)), int(round(y))


# -- 1. a custom entry from models list, the CLI and the REST API ------------------------------


def test_models_list_marks_custom_entries_and_warns_about_the_bad_one(catalogue):
    proc = app("models", "list", "--models-dir", catalogue.models_dir)
    assert proc.returncode == 0, proc.stderr
    rows = models_table(proc.stdout)
    assert rows["myswap*"][1:5] == ["swapper", "hyperswap", "installed", "sha256"]
    assert rows["myswap_crc*"][1:5] == ["swapper", "hyperswap", "installed", "crc32"]
    assert rows["my_arcface*"][1:5] == ["recognizer", "arcface", "installed", "sha256"]
    assert rows["upscale_x2*"][1:4] == ["frame_enhancer", "real_esrgan", "installed"]
    assert rows["myswap*"][6] == "permissive"
    assert "inswapper_128" in rows  # built-ins carry no mark
    assert not any(name.startswith("bad") for name in rows)
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning:")]
    bad = [line for line in warnings if "entry 'bad'" in line]
    assert len(bad) == 1 and "field 'sha256'" in bad[0], warnings
    assert sha256_of(catalogue.files["bad"]) in bad[0] and bad[0].endswith("entry skipped")


def test_cli_run_with_a_custom_swapper_changes_the_face_and_nothing_else(
    catalogue, images, tmp_path
):
    out = tmp_path / "out.png"
    proc = app(
        "run", "--quiet", "--data-dir", tmp_path / "data", "--models-dir", catalogue.models_dir,
        "--source", TOM_HANKS, "--target", images["t1"], "--output", out, "--swapper", "myswap",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "myswap" in proc.stdout, proc.stdout
    assert_one_face_changed(load_image(images["t1"]), load_image(out))


def test_rest_job_with_a_crc32_pinned_custom_swapper_records_its_models(studio, catalogue, images):
    with api(studio) as client:
        job = succeeded(client, submit(client, images["t1"], swapper="myswap_crc"))
        assert_one_face_changed(load_image(images["t1"]), result_image(client, job))
    assert job["result"]["swapper"] == "myswap_crc", job
    models = {m["role"]: m for m in job["result"].get("models", [])}
    assert models.get("swapper") == {
        "role": "swapper",
        "name": "myswap_crc",
        "licence": "MIT",
        "licence_class": "permissive",
    }, job["result"]
    assert models["recognizer"]["name"] == "my_arcface"
    assert models["recognizer"]["licence_class"] == "permissive"
    assert models["detector"]["name"] == "mtcnn"


# -- 2. a bad entry is not choosable ------------------------------------------------------------


def test_a_bad_entry_cannot_be_chosen_from_the_cli_or_the_api(studio, catalogue, images, tmp_path):
    proc = app(
        "run", "--quiet", "--data-dir", tmp_path / "data", "--models-dir", catalogue.models_dir,
        "--source", TOM_HANKS, "--target", images["crop"], "--output", tmp_path / "o.png",
        "--swapper", "bad",
    )  # fmt: skip
    line = assert_one_line_error(proc, "swapper", "'bad'")
    assert "myswap" in line  # the choices are listed
    assert not (tmp_path / "o.png").exists()
    with api(studio) as client:
        before = job_ids(client)
        message = refused(submit(client, images["crop"], swapper="bad"), "invalid_options", "'bad'")
        assert "myswap" in message
        assert job_ids(client) == before


# -- 3. auto prefers HyperSwap, then inswapper, then classic -----------------------------------


def _standin_registry(models_dir: Path, names: tuple[str, ...]) -> dict:
    """The built-in catalogue with stand-ins for ``names`` written under their real file
    names and pinned by their own checksums."""
    makers = {
        "hyperswap_1a_256": lambda p: _swapper(p, ("y2", "sqrt", "zero")),
        "inswapper_128": make_inswapper,
        "arcface_w600k_r50": make_arcface,
    }
    registry = dict(REGISTRY)
    for name in names:
        path = makers[name](models_dir / REGISTRY[name].filename)
        registry[name] = dataclasses.replace(
            REGISTRY[name], sha256=sha256_of(path), size=path.stat().st_size
        )
    return registry


@pytest.mark.parametrize(
    ("installed", "swapper", "recognizer"),
    [
        (("hyperswap_1a_256", "inswapper_128", "arcface_w600k_r50"), "hyperswap_1a_256",
         "arcface_w600k_r50"),
        (("inswapper_128", "arcface_w600k_r50"), "inswapper_128", "arcface_w600k_r50"),
        # Both swappers need the recognizer: without it neither is usable.
        (("hyperswap_1a_256", "inswapper_128"), "classic", None),
        ((), "classic", None),
    ],
    ids=["both", "inswapper-only", "no-recognizer", "nothing"],
)  # fmt: skip
def test_auto_prefers_hyperswap_then_inswapper_then_classic(
    tmp_path, installed, swapper, recognizer
):
    manager = ModelManager(tmp_path, _standin_registry(tmp_path, installed))
    resolved = resolve(SwapOptions(), manager)
    assert (resolved.swapper, resolved.recognizer, resolved.detector) == (
        swapper,
        recognizer,
        "mtcnn",
    )
    refs = {ref.role: ref for ref in resolve_models(SwapOptions(), manager)}
    assert refs["swapper"].name == swapper
    if swapper != "classic":
        assert refs["swapper"].sha256 == sha256_of(tmp_path / f"{swapper}.onnx")


def test_auto_runs_hyperswap_end_to_end_when_both_are_installed(tmp_path, images):
    names = ("hyperswap_1a_256", "inswapper_128", "arcface_w600k_r50")
    engine = FaceEngine(ModelManager(tmp_path, _standin_registry(tmp_path, names)))
    swapper = engine.prepare([load(TOM_HANKS)], SwapOptions())
    assert swapper.resolved.swapper == "hyperswap_1a_256"
    target = load_image(images["crop"])
    result = swapper.process(target)
    assert result.faces_swapped == 1
    assert_one_face_changed(target, result.image)
    used = {m["role"]: m["name"] for m in swapper.models_used()}
    assert used["swapper"] == "hyperswap_1a_256" and used["recognizer"] == "arcface_w600k_r50"


# -- 4. the enhancer chain ---------------------------------------------------------------------

RED = (0, 0, 255)  # BGR of the "red" stand-in's output (RGB 1, −1, −1 → 255, 0, 0)
BLUE = (255, 0, 0)


@pytest.fixture(scope="module")
def engine(catalogue) -> FaceEngine:
    return FaceEngine(ModelManager(catalogue.models_dir))


@pytest.mark.parametrize(
    ("chain", "blends", "expected"),
    [
        (("red", "blue"), (1.0,), BLUE),  # the last one paints over the first
        (("blue", "red"), (1.0,), RED),
        # One blend per enhancer: red fully, then blue at a quarter.
        (("red", "blue"), (1.0, 0.25), (0.25 * 255, 0, 0.75 * 255)),
        (("red", "blue"), (0.0, 0.5), None),  # red not at all: half blue over the face
    ],
    ids=["red-blue", "blue-red", "per-enhancer-blend", "first-blend-zero"],
)
def test_the_enhancer_chain_runs_in_order_with_per_enhancer_blends(
    engine, images, chain, blends, expected
):
    target = load_image(images["crop"])
    options = SwapOptions(swapper="classic", enhancer=chain, enhancer_blend=blends).validate()
    swapper = engine.prepare([load(TOM_HANKS)], options)
    x, y = nose(engine, target)
    swapped = engine.prepare([load(TOM_HANKS)], SwapOptions(swapper="classic")).process(target)
    pixel = swapper.process(target).image[y, x].astype(float)
    if expected is None:  # half of blue over the swapped face
        expected = 0.5 * swapped.image[y, x].astype(float) + 0.5 * np.array(BLUE, float)
    assert np.abs(pixel - np.array(expected, float)).max() <= 3, (pixel, expected)


def test_the_chain_from_the_command_line(catalogue, images, tmp_path):
    out = tmp_path / "out.png"
    proc = app(
        "run", "--quiet", "--data-dir", tmp_path / "data", "--models-dir", catalogue.models_dir,
        "--source", TOM_HANKS, "--target", images["crop"], "--output", out,
        "--swapper", "classic", "--enhancer", "red,blue", "--enhancer-blend", "1,0.25",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    engine = FaceEngine(ModelManager(catalogue.models_dir))
    x, y = nose(engine, load_image(images["crop"]))
    pixel = load_image(out)[y, x].astype(float)
    assert np.abs(pixel - np.array((0.25 * 255, 0, 0.75 * 255))).max() <= 4, pixel


@pytest.mark.parametrize("fidelity", [0.2, 0.8])
def test_enhancer_fidelity_reaches_the_weight_input(engine, images, fidelity):
    # The stand-in's output is its weight input (gain 0, offset 1, times max(weight)).
    target = load_image(images["crop"])
    options = SwapOptions(
        swapper="classic", enhancer=("fidelity",), enhancer_blend=(1.0,),
        enhancer_fidelity=fidelity,
    ).validate()  # fmt: skip
    x, y = nose(engine, target)
    pixel = engine.prepare([load(TOM_HANKS)], options).process(target).image[y, x]
    grey = (fidelity + 1.0) / 2.0 * 255.0
    assert np.abs(pixel.astype(float) - grey).max() <= 3, (pixel, grey)


# -- 5. the frame enhancer through jobs -------------------------------------------------------


def test_a_frame_enhanced_image_job_doubles_the_size_and_keeps_the_watermark(
    studio, images, tmp_path
):
    with api(studio) as client:
        job = succeeded(
            client, submit(client, images["crop"], swapper="myswap", frame_enhancer="upscale_x2")
        )
        content = client.get(f"/api/v1/jobs/{job['id']}/result").content
    out = tmp_path / "result.png"
    out.write_bytes(content)
    image = load_image(out)
    height, width = load_image(images["crop"]).shape[:2]
    assert image.shape[:2] == (UPSCALE * height, UPSCALE * width)
    proc = app("verify", out, "--json", "--data-dir", studio.data_dir)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["watermark"] is not None, report
    assert report["watermark"].get("job_id") == job["id"], report


def test_a_frame_enhanced_video_job_doubles_the_size(studio, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=1.0, fps=5, size=(320, 240))
    with api(studio) as client:
        job = succeeded(client, submit(client, video, frame_enhancer="upscale_x2"))
        content = client.get(f"/api/v1/jobs/{job['id']}/result").content
    out = tmp_path / "result.mp4"
    out.write_bytes(content)
    frames = decode_frames(out)
    assert len(frames) == 5
    assert {frame.shape[:2] for frame in frames} == {(240 * UPSCALE, 320 * UPSCALE)}


# -- 6. work bounds at submit ------------------------------------------------------------------


def test_max_output_megapixels_refuses_a_frame_enhanced_job_before_it_exists(studio, images):
    with api(studio) as client:
        before = job_ids(client)
        response = submit(client, images["t1"], swapper="myswap", frame_enhancer="upscale_x2")
        refused(response, "invalid_input", "--max-output-megapixels", "2560×1772")
        assert job_ids(client) == before


def test_max_job_cost_refuses_a_costly_job_before_it_exists(studio, images):
    # pixel_boost 1024 over a 256 swapper: 16 sub-images, × (1 + 2 enhancers) = 48 > 40.
    with api(studio) as client:
        before = job_ids(client)
        response = submit(
            client, images["crop"], swapper="myswap", pixel_boost=1024, enhancer=["red", "blue"]
        )
        refused(response, "invalid_input", "--max-job-cost", "48")
        assert job_ids(client) == before


def test_the_output_bound_reads_a_fixed_shape_enhancers_scale_from_its_file(studio, images):
    # t1.jpg at half size (640×443) ×2 is 1.1 MP, under the 2 MP bound; the entry names no
    # scale, and the file's shapes (64 → 128) say ×2: a ×4 guess would refuse it.
    with api(studio) as client:
        job = succeeded(client, submit(client, images["half"], frame_enhancer="upscale_x2"))
        image = result_image(client, job)
    assert image.shape[:2] == (443 * UPSCALE, 640 * UPSCALE)


# -- 7. the operator's licence filter -----------------------------------------------------------


def test_models_list_with_a_licence_filter_hides_other_classes(catalogue):
    proc = app("models", "list", "--models-dir", catalogue.models_dir, "--licences", "permissive")
    assert proc.returncode == 0, proc.stderr
    rows = models_table(proc.stdout)
    assert "gfpgan_1.4" in rows and "myswap*" in rows  # Apache-2.0
    assert "inswapper_128" not in rows and "codeformer" not in rows  # non-commercial
    assert "hyperswap_1a_256" not in rows  # research
    assert "licence filter: permissive" in proc.stdout


def test_a_submit_naming_a_model_the_licence_filter_hides_is_refused(studio, images):
    with api(studio) as client:
        before = job_ids(client)
        response = submit(client, images["crop"], swapper="inswapper_128")
        refused(response, "model_unavailable", "inswapper_128", "licence filter", "non-commercial")
        assert job_ids(client) == before


# -- 8. the memory budget ----------------------------------------------------------------------


def test_a_memory_budget_evicts_the_least_recently_used_model(catalogue, images):
    red, blue = (catalogue.files[name].stat().st_size for name in ("red", "blue"))
    engine = FaceEngine(ModelManager(catalogue.models_dir), memory_budget=red + blue - 1)
    first = engine.enhancer("red")
    assert engine.loaded() == ["enhancer:red"]
    engine.enhancer("blue")
    assert engine.loaded() == ["enhancer:blue"]  # red went out to make room
    again = engine.enhancer("red")
    assert again is not first and engine.loaded() == ["enhancer:red"]  # loaded again
    # A job whose chain is larger than the budget still runs each model in turn.
    target = load_image(images["crop"])
    options = SwapOptions(swapper="classic", enhancer=("red", "blue"), enhancer_blend=(1.0,))
    pixel = engine.prepare([load(TOM_HANKS)], options.validate()).process(target).image
    x, y = nose(engine, target)
    assert np.abs(pixel[y, x].astype(float) - np.array(BLUE, float)).max() <= 3
    unbounded = FaceEngine(ModelManager(catalogue.models_dir))
    unbounded.enhancer("red")
    unbounded.enhancer("blue")
    assert unbounded.loaded() == ["enhancer:red", "enhancer:blue"]


# -- 9. pixel boost ------------------------------------------------------------------------------


def test_pixel_boost_512_on_a_256_swapper_succeeds(studio, images):
    with api(studio) as client:
        job = succeeded(client, submit(client, images["t1"], swapper="myswap", pixel_boost=512))
        assert_one_face_changed(load_image(images["t1"]), result_image(client, job))
    assert job["options"]["pixel_boost"] == "512"


def test_pixel_boost_that_is_not_a_whole_multiple_is_refused_at_submit(studio, images):
    with api(studio) as client:
        before = job_ids(client)
        response = submit(client, images["crop"], swapper="myswap", pixel_boost=300)
        refused(response, "invalid_options", "pixel_boost", "300", "256")
        assert job_ids(client) == before
