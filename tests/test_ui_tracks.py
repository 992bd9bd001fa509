"""A video target's faces as tracks, in a real browser (Playwright driving Debian's Chromium).

One studio on 127.0.0.1 with the embedded models serves the module. The clip is made
here with PyAV: two real faces of insightface's t1.jpg pasted on a blurred part of the
same photo (its table, no faces), 30 frames at 10 fps. Face A is there from the first
frame to the last, drifting right; face B slides in from the right edge from frame 10
and stops, fully in view from frame 24. So the true frame ranges are known: A's track
covers frames 0–29; B's starts once enough of it is in view (10–24) and ends at 29.

The tests: the face cards of a trimmed video come from the first frame of the range;
"Find faces in the video" runs the tracking pass with a live progress bar and lists one
card per track with its frames and times; a source given to a track is a ``track``
entry of the job's ``face_map``, the preview swaps only that track's face, and the job
swaps only that track; the Queue lists the finished job's tracks, in English and in
Chinese.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.assets import TOM_HANKS
from tests.browser_form import CHROMIUM, open_page, set_number
from tests.live_studio import StudioProcess
from tests.media import t1

pytest.importorskip("playwright.sync_api")

WIDTH, HEIGHT, FPS, FRAMES = 480, 272, 10, 30
B_ENTERS = 10  # face B's first frame with any of it in view
B_IN_VIEW = 24  # and its first frame fully in view

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]


# -- the clip ------------------------------------------------------------------------------


class Clip:
    """The two-face clip and where its faces are (boxes in pixels, per frame)."""

    def __init__(self, path: Path, engine) -> None:
        photo = t1()
        faces = sorted(engine.detect(photo), key=lambda face: float(face.box[0]))
        assert len(faces) == 6  # t1.jpg's six faces, left to right
        self.patches, self.boxes = [], []
        for face in (faces[1], faces[4]):
            x1, y1, x2, y2 = (float(v) for v in face.box)
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            left, top = int(cx - 0.8 * w), int(cy - 0.75 * h)
            self.patches.append(photo[top : int(cy + 0.75 * h), left : int(cx + 0.8 * w)].copy())
            self.boxes.append(np.array([x1 - left, y1 - top, x2 - left, y2 - top]))
        table = cv2.resize(photo[-250:, :], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        self.background = cv2.GaussianBlur(table, (0, 0), 3)
        self.path = path
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            for index in range(FRAMES):
                frame = av.VideoFrame.from_ndarray(self.frame(index), format="bgr24")
                frame.pts, frame.time_base = index, Fraction(1, FPS)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))

    def corner(self, which: int, index: int) -> tuple[int, int] | None:
        """Where face ``which`` (0: A, 1: B) has its patch's corner in frame ``index``."""
        if which == 0:
            return 40 + 2 * index, 60
        if index < B_ENTERS:
            return None
        return max(WIDTH - 12 * (index - B_ENTERS) - 10, 300), 80

    def box(self, which: int, index: int) -> np.ndarray | None:
        corner = self.corner(which, index)
        if corner is None:
            return None
        return self.boxes[which] + np.array([*corner, *corner])

    def frame(self, index: int) -> np.ndarray:
        frame = self.background.copy()
        for which, patch in enumerate(self.patches):
            corner = self.corner(which, index)
            if corner is None:
                continue
            x, y = corner
            h, w = patch.shape[:2]
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, WIDTH), min(y + h, HEIGHT)
            frame[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]
        return frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory, engine) -> Clip:
    return Clip(tmp_path_factory.mktemp("clip") / "two-faces.mp4", engine)


# -- fixtures: one studio, one browser ------------------------------------------------------


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    process = StudioProcess(tmp_path_factory.mktemp("ui-tracks") / "data").start()
    yield process
    process.stop()


@pytest.fixture
def page(studio, browser):
    context, opened = open_page(browser, studio.url)
    yield opened
    context.close()


# -- helpers --------------------------------------------------------------------------------


def upload(page, video: Path) -> None:
    page.locator("#fs-sources input[type=file]").set_input_files([str(TOM_HANKS)])
    page.locator("#fs-targets input[type=file]").set_input_files([str(video)])
    page.wait_for_selector("#fs-source-faces img", timeout=30_000)
    page.wait_for_selector("#fs-target-faces img", timeout=30_000)
    page.wait_for_selector("#fs-video", state="visible", timeout=30_000)


def data_uri_image(uri: str) -> np.ndarray:
    import base64

    assert uri.startswith("data:image/jpeg;base64,"), uri[:40]
    raw = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    assert image is not None
    return image


def normalised(image: np.ndarray, box) -> np.ndarray:
    """The box's pixels as a zero-mean, unit-variance 48×48 grey patch."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    crop = image[max(y1, 0) : y2, max(x1, 0) : x2]
    gray = cv2.cvtColor(
        cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
    )
    gray = gray.astype(np.float32)
    return (gray - gray.mean()) / (gray.std() + 1e-6)


def whose_face(engine, clip: Clip, thumb: np.ndarray) -> int:
    """Which of the clip's faces (0: A, 1: B) a thumbnail shows: the one whose pixels
    correlate with the thumbnail's face, clearly better than the other's."""
    found = engine.detect(thumb)
    assert found, "no face in the thumbnail"
    mine = normalised(thumb, found[0].box)
    scores = [
        float((mine * normalised(patch, box)).mean())
        for patch, box in zip(clip.patches, clip.boxes, strict=True)
    ]
    best = int(np.argmax(scores))
    assert scores[best] > 0.6 and scores[best] > scores[1 - best] + 0.1, scores
    return best


def wait_text(page, selector: str, needle: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([selector, needle]) => { const node = document.querySelector(selector);"
        " return node && node.innerText.includes(needle); }",
        arg=[selector, needle],
        timeout=timeout,
    )


def finished_job(page, url: str, job_id: str) -> dict:
    deadline = time.monotonic() + 180
    while True:
        job = page.request.get(f"{url}/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        page.wait_for_timeout(250)


def open_tab(page, name: str) -> None:
    page.locator("button[role=tab]", has_text=name).first.click()


TRACK_DETAIL = re.compile(r"frames (\d+)–(\d+) \((\d+)\) · (\d+\.\d\d)–(\d+\.\d\d) s")


def shown_tracks(page, engine, clip: Clip) -> dict[int, dict]:
    """The track cards: per clip face (0: A, 1: B), the track id and frames shown."""
    cards = page.locator("#fs-target-faces .fs-track")
    shown: dict[int, dict] = {}
    for number in range(cards.count()):
        card = cards.nth(number)
        track = int(card.get_attribute("data-track"))
        assert card.locator(".fs-face-index").inner_text() == f"#{track}"
        match = TRACK_DETAIL.fullmatch(card.locator(".fs-face-detail").inner_text())
        assert match, card.locator(".fs-face-detail").inner_text()
        first, last, count = (int(match.group(i)) for i in (1, 2, 3))
        start, end = float(match.group(4)), float(match.group(5))
        assert start == pytest.approx(first / FPS) and end == pytest.approx(last / FPS)
        thumb = data_uri_image(card.locator("img").get_attribute("src"))
        face = whose_face(engine, clip, thumb)
        assert face not in shown, "one card per face"
        shown[face] = {"id": track, "first_frame": first, "last_frame": last, "frames": count}
    return shown


# -- the face cards of a trimmed video ----------------------------------------------------------


def test_trimmed_video_face_cards_come_from_the_first_frame_of_the_range(page, clip, engine):
    upload(page, clip.path)
    cards = page.locator("#fs-target-faces .fs-face")
    assert cards.count() == 1  # frame 0: face A only
    assert (
        whose_face(engine, clip, data_uri_image(cards.first.locator("img").get_attribute("src")))
        == 0
    )
    # Before the pass, the panel says what it would read: the whole clip.
    note = page.locator("#fs-tracks-note")
    wait_text(page, "#fs-tracks-note", f"reads {FRAMES} frames once")
    assert f"{FRAMES} frames in all" in note.inner_text()

    set_number(page, "#fs-trim-start", 2.5)
    page.wait_for_function(
        "document.querySelectorAll('#fs-target-faces .fs-face').length === 2", timeout=30_000
    )
    wait_text(page, "#fs-tracks-note", "reads 5 frames once")
    assert "frame 25, the first of the range" in note.inner_text()
    # Frame 25's two faces, left to right: A, then B.
    faces = [
        whose_face(engine, clip, data_uri_image(cards.nth(i).locator("img").get_attribute("src")))
        for i in range(2)
    ]
    assert faces == [0, 1]


# -- tracks: find, assign, preview, submit, queue ------------------------------------------------


def test_video_tracks_found_assigned_previewed_and_listed_in_the_queue(page, studio, clip, engine):
    upload(page, clip.path)
    page.locator("#fs-consent input[type=checkbox]").check()
    # Every text the faces panel shows while the pass runs: its progress bar's words.
    page.evaluate(
        """() => {
          window.fsSeen = [];
          const panel = document.querySelector('#fs-target-faces');
          new MutationObserver(() => window.fsSeen.push(panel.innerText))
            .observe(panel, { subtree: true, childList: true, characterData: true });
        }"""
    )
    page.click("#fs-find-tracks")
    page.wait_for_function(
        "document.querySelectorAll('#fs-target-faces .fs-track').length >= 2", timeout=60_000
    )
    seen = "\n".join(page.evaluate("window.fsSeen"))
    reported = [int(n) for n in re.findall(rf"Finding faces: frame (\d+) of {FRAMES}", seen)]
    assert any(0 < n <= FRAMES for n in reported), seen[-500:]  # the pass's own reports

    # One card per track, each with the frames where its face is.
    shown = shown_tracks(page, engine, clip)
    assert sorted(shown) == [0, 1]
    assert (shown[0]["first_frame"], shown[0]["last_frame"]) == (0, FRAMES - 1)
    assert shown[0]["frames"] == FRAMES
    assert B_ENTERS <= shown[1]["first_frame"] <= B_IN_VIEW, shown[1]
    assert shown[1]["last_frame"] == FRAMES - 1
    assert shown[1]["frames"] == FRAMES - shown[1]["first_frame"]
    wait_text(page, "#fs-tracks-note", "2 face track(s) in frames 0–29")

    # A source for face B's track only.
    track_b = shown[1]["id"]
    page.locator(f"#fs-track-source-{track_b}").select_option("0")
    page.wait_for_selector(f'#fs-target-faces .fs-track[data-track="{track_b}"][data-source="0"]')
    # Frame 0 has no face with a source: the preview says so instead of swapping.
    wait_text(page, "#fs-preview-note", "No track with a source is in frame 0")
    # Frame 25 has both faces: only B's changes.
    set_number(page, "#fs-frame", 25)
    wait_text(page, "#fs-preview figcaption", "frame 25 · 1 face(s) swapped")
    before = data_uri_image(page.locator("#fs-preview img.fs-before").get_attribute("src"))
    after = data_uri_image(page.locator("#fs-preview img.fs-after").get_attribute("src"))
    assert before.shape == after.shape == (HEIGHT, WIDTH, 3)
    changed = np.abs(after.astype(int) - before.astype(int)).mean(axis=2)

    def inside(which: int) -> float:
        x1, y1, x2, y2 = (int(round(float(v))) for v in clip.box(which, 25))
        return float(changed[max(y1, 0) : min(y2, HEIGHT), max(x1, 0) : min(x2, WIDTH)].mean())

    assert inside(1) > 8.0, inside(1)  # B swapped
    assert inside(0) <= 3.0, inside(0)  # A left alone (JPEG and watermark noise only)

    # Submit: the job's face_map names the track.
    page.click("#fs-submit")
    wait_text(page, "#fs-submit-status", "Submitted 1", 30_000)
    (job,) = page.request.get(f"{studio.url}/api/v1/jobs").json()["jobs"]
    assert job["options"]["face_map"] == [{"source": 0, "track": track_b}]
    done = finished_job(page, studio.url, job["id"])
    assert done["status"] == "succeeded", done
    tracks = {track["id"]: track for track in done["result"]["tracks"]}
    # The job's pass found the tracks the page showed, and swapped only B's.
    for face, card in shown.items():
        track = tracks[card["id"]]
        assert {k: track[k] for k in ("first_frame", "last_frame", "frames")} == {
            k: card[k] for k in ("first_frame", "last_frame", "frames")
        }
        assert track["swapped"] is (face == 1)
    assert tracks[track_b]["source"] in (0, [0])
    assert len(tracks) == 2

    # The Queue lists the finished job's tracks.
    open_tab(page, "Queue")
    rows = page.locator(f'#fs-queue .fs-job[data-job-id="{job["id"]}"] .fs-track-row')
    rows.first.wait_for(timeout=60_000)
    assert rows.count() == 2
    for face, card in shown.items():
        row = page.locator(
            f'#fs-queue .fs-job[data-job-id="{job["id"]}"] .fs-track-row[data-track="{card["id"]}"]'
        )
        text = row.inner_text()
        assert f"Track {card['id']}" in text
        assert f"frames {card['first_frame']}–{card['last_frame']} ({card['frames']})" in text
        assert ("swapped with source 0" if face == 1 else "not swapped") in text
        assert row.get_attribute("data-swapped") == ("1" if face == 1 else "0")


def test_queue_lists_a_video_jobs_tracks_in_chinese(studio, browser, clip):
    context, page = open_page(browser, studio.url, locale="zh-CN")
    try:
        response = page.request.post(
            f"{studio.url}/api/v1/jobs",
            multipart={
                "source": {
                    "name": "me.png",
                    "mimeType": "image/png",
                    "buffer": TOM_HANKS.read_bytes(),
                },
                "target": {
                    "name": "two-faces.mp4",
                    "mimeType": "video/mp4",
                    "buffer": clip.path.read_bytes(),
                },
                "options": json.dumps({"consent": True, "face_map": [{"source": 0, "track": 0}]}),
            },
            headers={"Origin": studio.url},
        )
        assert response.status == 202, response.text()
        job_id = response.json()["id"]
        done = finished_job(page, studio.url, job_id)
        assert done["status"] == "succeeded", done
        tracks = done["result"]["tracks"]
        assert [track["swapped"] for track in tracks] == [True, False]  # track 0 is A's
        open_tab(page, "队列")
        rows = page.locator(f'#fs-queue .fs-job[data-job-id="{job_id}"] .fs-track-row')
        rows.first.wait_for(timeout=60_000)
        assert rows.count() == 2
        first = rows.nth(0).inner_text()
        assert "轨迹 0" in first and "已用源 0 替换" in first
        assert f"第 0–{FRAMES - 1} 帧（{FRAMES} 帧）" in first
        assert "未替换" in rows.nth(1).inner_text()
        box = page.locator(f'#fs-queue .fs-job[data-job-id="{job_id}"] .fs-tracks-title')
        assert box.inner_text() == "视频中跟踪到的人脸"
    finally:
        context.close()


# -- the preview's stand-in for track entries ---------------------------------------------------


def test_preview_face_entries_follow_the_tracks_boxes(clip, engine):
    """The preview cannot run the pass: a track's source goes to the previewed frame's
    face (left to right) that its box overlaps, and to no other."""
    from engine.face_map import left_to_right
    from engine.options import OutputOptions, SwapOptions
    from engine.video.decode import read_frame
    from engine.video_plan import analyse_target
    from studio.ui.tracks import match_tracks, preview_face_map

    options = SwapOptions()
    analysis = analyse_target(engine, engine.resolve(options), options, clip.path, OutputOptions())
    at_25 = analysis.faces_at(25)
    assert len(at_25) == 2
    image = read_frame(clip.path, 25)
    faces = left_to_right(engine.detect(image))
    assert len(faces) == 2
    # Which track is whose: the tracked box nearest each true box at frame 25.
    owner = match_tracks([clip.box(0, 25), clip.box(1, 25)], at_25)
    assert sorted(owner) == [0, 1] and owner[0] != owner[1]
    track_a, track_b = owner[0], owner[1]
    # A is left of B: face 0 is A's, face 1 is B's.
    assert preview_face_map(faces, at_25, {track_b: 0}) == [{"source": 0, "face": 1}]
    assert preview_face_map(faces, at_25, {track_a: 1, track_b: 0}) == [
        {"source": 1, "face": 0},
        {"source": 0, "face": 1},
    ]
    # Frame 5 has A only: B's source finds no face there.
    image = read_frame(clip.path, 5)
    assert (
        preview_face_map(left_to_right(engine.detect(image)), analysis.faces_at(5), {track_b: 0})
        == []
    )
