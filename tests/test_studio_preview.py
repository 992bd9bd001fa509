"""``POST /api/v1/preview`` end to end against live studio processes on 127.0.0.1.

Real photos (insightface's t1.jpg group photo and Tom Hanks), a real video made with
PyAV, the embedded models (classic swapper, MTCNN detector) and the real provenance
check. One test starts its server with a ``sitecustomize`` (test-only, never shipped)
that holds the first previews on their preview thread until the test releases them or
they are canceled: that makes "busy" and "replaced" deterministic without timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.assets import T1, TOM_HANKS
from tests.live_studio import REPO, StudioProcess, create_key
from tests.media import decode_frames, make_video

pytestmark = pytest.mark.timeout(300)

CONSENT = {"selector": "many", "consent": True}
VIDEO_FPS = 10
VIDEO_FRAMES = 10
# Outside the faces (boxes grown by this fraction of their size on every side) a preview
# differs from its input only by the invisible watermark and one JPEG pass.
MARGIN = 0.5
MAX_OUTSIDE_MEAN_DIFF = 2.0
MIN_FACE_MEAN_DIFF = 4.0
# IPTC's digital source type of an edit that composites AI-generated parts into a photo.
COMPOSITE_SYNTHETIC = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preview-media")
    image = root / "group.jpg"
    photo = cv2.imread(str(T1))
    cv2.imwrite(str(image), cv2.resize(photo, (640, 443), interpolation=cv2.INTER_AREA))
    video = make_video(
        root / "clip.mp4", seconds=VIDEO_FRAMES / VIDEO_FPS, fps=VIDEO_FPS, size=(640, 480)
    )
    return {"source": TOM_HANKS, "image": image, "video": video}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("preview-studio")
    keys = {name: create_key(data, name) for name in ("alice", "bob")}
    process = StudioProcess(data, ["--max-upload-mb", "4"]).start()
    yield process, keys
    process.stop()


def client(process: StudioProcess, key: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=process.url, headers=headers, timeout=120)


def files(source: Path, target: Path) -> list:
    return [
        ("source", (source.name, source.read_bytes())),
        ("target", (target.name, target.read_bytes())),
    ]


def preview(http: httpx.Client, media: dict, target: str, options=CONSENT, frame=None):
    data = {"options": json.dumps(options)}
    if frame is not None:
        data["frame"] = frame
    return http.post("/api/v1/preview", files=files(media["source"], media[target]), data=data)


def decoded(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


_detector: list = []


def face_boxes(image: np.ndarray) -> list[np.ndarray]:
    """The faces of the input, found by the embedded MTCNN detector."""
    if not _detector:
        import tempfile

        from engine.models.manager import ModelManager
        from engine.pipeline import FaceEngine

        models = Path(tempfile.mkdtemp(prefix="preview-test-models-"))
        _detector.append(FaceEngine(ModelManager(models), "cpu"))
    return [face.box for face in _detector[0].detect(image)]


def compare(before: np.ndarray, after: np.ndarray) -> tuple[list[float], float]:
    """Mean absolute difference inside each face box and outside all grown boxes."""
    assert before.shape == after.shape
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).mean(axis=2)
    height, width = diff.shape
    outside = np.ones_like(diff, dtype=bool)
    inside = []
    boxes = face_boxes(before)
    assert boxes  # the group photo: faces in view
    for x1, y1, x2, y2 in boxes:
        inside.append(float(diff[int(y1) : int(y2), int(x1) : int(x2)].mean()))
        mx, my = MARGIN * (x2 - x1), MARGIN * (y2 - y1)
        top, bottom = max(0, int(y1 - my)), min(height, int(y2 + my))
        left, right = max(0, int(x1 - mx)), min(width, int(x2 + mx))
        outside[top:bottom, left:right] = False
    assert outside.mean() > 0.3  # enough of the frame left to judge
    return inside, float(diff[outside].mean())


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


# -- what a preview shows -----------------------------------------------------------------


def test_image_preview_changes_faces_only_and_is_marked(server, media, tmp_path):
    process, keys = server
    with client(process, keys["alice"]) as http:
        response = preview(http, media, "image")
        after = decoded(response)
        assert response.headers["x-preview-frame"] == "0"
        assert int(response.headers["x-faces-swapped"]) >= 3
        assert response.headers["cache-control"] == "no-store"
        before = cv2.imread(str(media["image"]))
        inside, outside = compare(before, after)
        assert min(inside) >= MIN_FACE_MEAN_DIFF, inside
        assert outside <= MAX_OUTSIDE_MEAN_DIFF, outside
        checked = http.post(
            "/api/v1/verify", files=[("file", ("preview.jpg", response.content))]
        ).json()
        assert checked["watermark"]["job_id"] == "preview"
        assert checked["c2pa"]["status"] == "trusted"
        assert http.get("/api/v1/jobs").json()["jobs"] == []

    saved = tmp_path / "preview.jpg"
    saved.write_bytes(response.content)
    command = [sys.executable, "app.py", "verify", str(saved), "--json"]
    command += ["--data-dir", str(process.data_dir)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    mark = report["watermark"]
    assert mark is not None and mark["this_installation"] and mark["job_id"] == "preview"
    assert report["metadata"]["digital_source_type"] == COMPOSITE_SYNTHETIC
    assert report["c2pa"]["status"] == "trusted"


def test_video_frame_preview_by_index_and_seconds(server, media):
    process, keys = server
    frames = decode_frames(media["video"])
    assert len(frames) == VIDEO_FRAMES
    with client(process, keys["alice"]) as http:
        by_index = preview(http, media, "video", frame="3")
        assert by_index.headers.get("x-preview-frame") == "3"
        inside, outside = compare(frames[3], decoded(by_index))
        assert min(inside) >= MIN_FACE_MEAN_DIFF, inside
        assert outside <= MAX_OUTSIDE_MEAN_DIFF, outside

        # t=0.55 s at 10 fps is shown by frame 5 (0.5 s); the pan makes frames differ.
        by_time = preview(http, media, "video", frame="t=0.55")
        assert by_time.headers.get("x-preview-frame") == "5"
        shown = decoded(by_time)
        assert compare(frames[5], shown)[1] <= MAX_OUTSIDE_MEAN_DIFF
        assert compare(frames[4], shown)[1] > 3 * MAX_OUTSIDE_MEAN_DIFF

        # Frame indices count in the whole video: trim_start does not shift them.
        trimmed = preview(http, media, "video", {**CONSENT, "trim_start": 0.5}, frame="2")
        assert trimmed.headers.get("x-preview-frame") == "2"
        assert compare(frames[2], decoded(trimmed))[1] <= MAX_OUTSIDE_MEAN_DIFF

        # The last frame and the very end of the video are inside (past them: 422, below).
        for last in (str(VIDEO_FRAMES - 1), f"t={VIDEO_FRAMES / VIDEO_FPS}"):
            end = preview(http, media, "video", frame=last)
            assert end.headers.get("x-preview-frame") == str(VIDEO_FRAMES - 1), end.text
        assert http.get("/api/v1/jobs").json()["jobs"] == []


def test_option_changes_show_at_once_and_repeat_exactly(server, media):
    """Previews reuse what they found before (the prepared identity, the frame's faces)
    only while the options that decide it stay the same."""
    process, keys = server
    with client(process, keys["bob"]) as http:
        many = preview(http, media, "image", {**CONSENT, "mask_blur": 0.3})
        faces = int(many.headers["x-faces-swapped"])
        assert faces >= 3
        one = preview(http, media, "image", {**CONSENT, "selector": "one", "mask_blur": 0.3})
        assert one.headers["x-faces-swapped"] == "1"
        sharper = preview(http, media, "image", {**CONSENT, "mask_blur": 0.05})
        assert int(sharper.headers["x-faces-swapped"]) == faces
        again = preview(http, media, "image", {**CONSENT, "mask_blur": 0.3})
        first, blurred, repeated = decoded(many), decoded(sharper), decoded(again)
        assert np.array_equal(first, repeated)  # the same options give the same pixels
        inside, outside = compare(first, blurred)
        assert max(inside) > 1.0 and outside <= MAX_OUTSIDE_MEAN_DIFF  # the blur shows
        assert http.get("/api/v1/jobs").json()["jobs"] == []


def test_face_map_preview_swaps_only_the_mapped_face(server, media):
    process, keys = server
    before = cv2.imread(str(media["image"]))
    boxes = sorted(face_boxes(before), key=lambda box: float(box[0]))  # left to right
    assert len(boxes) >= 4
    chosen = 2
    options = {"consent": True, "face_map": [{"source": 0, "face": chosen}]}
    with client(process, keys["bob"]) as http:
        response = preview(http, media, "image", options)
        assert response.headers.get("x-faces-swapped") == "1", response.text
        after = decoded(response)
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).mean(axis=2)
    inside = [float(diff[int(y1) : int(y2), int(x1) : int(x2)].mean()) for x1, y1, x2, y2 in boxes]
    assert inside[chosen] >= MIN_FACE_MEAN_DIFF, inside
    # The unmapped faces keep only the watermark's and JPEG's noise (more on a face's
    # texture than on the background): below the change threshold, far below the swap.
    others = inside[:chosen] + inside[chosen + 1 :]
    assert max(others) < MIN_FACE_MEAN_DIFF, inside
    assert inside[chosen] > 4 * max(others), inside


@pytest.mark.parametrize(
    ("target", "frame", "says"),
    [
        ("video", "-1", "frame index"),
        ("video", "abc", "frame index"),
        ("video", "1.5", "frame index"),
        ("video", "t=-1", "frame index"),
        ("video", str(VIDEO_FRAMES), "past the end"),
        ("video", "t=9", "past the end"),
        ("image", "1", "only frame is 0"),
        ("image", "t=0.5", "only frame is 0"),
    ],
)
def test_bad_frame_is_422(server, media, target, frame, says):
    process, keys = server
    with client(process, keys["bob"]) as http:
        answer = error(preview(http, media, target, frame=frame), 422)
        assert answer["code"] == "invalid_input"
        assert says in answer["message"]
        assert ".part" not in answer["message"]  # never the server's temporary file


def test_refusals_are_those_of_a_submit(server, media, tmp_path):
    process, keys = server
    noise = tmp_path / "noise.png"  # over the server's 4 MB upload limit
    pixels = np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    cv2.imwrite(str(noise), pixels)
    assert noise.stat().st_size > 4_000_000
    with client(process, keys["bob"]) as http:
        missing = error(preview(http, media, "image", {"selector": "many"}), 422)
        assert missing["code"] == "invalid_options" and "consent" in missing["message"]
        declined = error(preview(http, media, "image", {"consent": False}), 422)
        assert declined["code"] == "invalid_options"

        def both(options: dict, target: Path = media["image"]) -> tuple[dict, dict]:
            data = {"options": json.dumps(options)}
            upload = files(media["source"], target)
            job = http.post("/api/v1/jobs", files=upload, data=data)
            shown = http.post("/api/v1/preview", files=upload, data=data)
            return error(job, 422), error(shown, 422)

        # A malformed consent, an unknown option and a model that is not installed are
        # refused with the same code and message as a job's submission.
        for options in (
            {"consent": "yes"},
            {"consent": True, "no_such_option": 1},
            {"consent": True, "swapper": "inswapper_128"},
        ):
            job, shown = both(options)
            assert shown == job, options
        assert both({"consent": True, "swapper": "inswapper_128"})[1]["code"] == (
            "model_unavailable"
        )
        job, shown = both(CONSENT, noise)  # the same upload limits
        assert shown == job and "upload limit" in shown["message"]
        unknown = error(
            http.post(
                "/api/v1/preview",
                files=files(media["source"], media["image"]),
                data={"options": json.dumps(CONSENT), "frames": "1"},
            ),
            422,
        )
        assert "frames" in unknown["message"]
        assert http.get("/api/v1/jobs").json()["jobs"] == []


# -- one preview per owner, a bounded number in all ---------------------------------------

HOLD = textwrap.dedent(
    """
    # Test-only (tests/test_studio_preview.py): hold the first previews on their preview
    # thread until the test releases them or they are canceled.
    import itertools
    import os
    import time
    from pathlib import Path

    if os.environ.get("PREVIEW_HOLD_DIR"):
        import studio.preview as preview

        hold_dir = Path(os.environ["PREVIEW_HOLD_DIR"])
        held = int(os.environ["PREVIEW_HOLD_FIRST"])
        count = itertools.count(1)
        render = preview.PreviewService.render

        def holding(self, work, cancel):
            number = next(count)
            if number <= held:
                (hold_dir / f"entered-{number}").touch()
                release = hold_dir / f"release-{number}"
                while not cancel.canceled and not release.exists():
                    time.sleep(0.01)
            return render(self, work, cancel)

        preview.PreviewService.render = holding
    """
)


@pytest.fixture
def held_server(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOLD)
    gates = tmp_path / "gates"
    gates.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    keys = {name: create_key(data, name) for name in ("alice", "bob", "carol")}
    env = {
        "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO)]),
        "PREVIEW_HOLD_DIR": str(gates),
        "PREVIEW_HOLD_FIRST": "2",
    }
    process = StudioProcess(data, [], env=env).start()
    yield process, keys, gates
    process.stop()


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def test_newer_preview_replaces_older_and_capacity_is_bounded(held_server, media):
    from studio.preview import PREVIEW_SLOTS

    assert PREVIEW_SLOTS == 2  # two previews are held below to fill every slot
    process, keys, gates = held_server
    alice, bob, carol = (client(process, keys[name]) for name in ("alice", "bob", "carol"))
    with alice, bob, carol, ThreadPoolExecutor(4) as pool:
        first = pool.submit(preview, alice, media, "image")
        wait_for(gates / "entered-1")
        other = pool.submit(preview, carol, media, "image")
        wait_for(gates / "entered-2")

        # Both slots are busy with other owners: 429 with Retry-After, at once.
        busy = preview(bob, media, "image")
        assert error(busy, 429)["code"] == "too_many_requests"
        assert int(busy.headers["retry-after"]) >= 1

        # Alice's newer preview cancels her held one and takes its slot over.
        newer = pool.submit(preview, alice, media, "video", frame="2")
        replaced = error(first.result(timeout=120), 409)
        assert replaced["code"] == "canceled" and "newer preview" in replaced["message"]
        shown = newer.result(timeout=120)
        assert shown.status_code == 200 and shown.headers["x-preview-frame"] == "2"
        assert not other.done()  # carol's is still held: the other owner is untouched

        (gates / "release-2").touch()
        assert other.result(timeout=120).status_code == 200
        assert preview(bob, media, "image").status_code == 200  # a slot is free again
        for http in (alice, bob, carol):
            assert http.get("/api/v1/jobs").json()["jobs"] == []
        health = alice.get("/api/v1/health").json()
        assert health["queue_depth"] == 0 and not any(health["jobs"].values())
