"""The studio's creative loop in a real browser (Playwright driving Debian's Chromium).

One studio on 127.0.0.1 serves every test of the module, with the embedded models and
a user catalogue entry (an XSeg occluder stand-in) whose file is not installed but
is served by a local HTTPS server on 127.0.0.1 with a certificate made for the test
(the studio process trusts it through ``SSL_CERT_FILE``, the standard variable of its
HTTP client). The tests: the face galleries show whole faces, centred, left to right;
a preview appears before Submit and follows the options; a face-to-source assignment
is the job's ``face_map``; a trimmed video job lasts the trimmed time; a missing model
downloads where it is chosen, with a live progress bar, and becomes selectable (the
Models panel follows); the page fits a 390 px phone and works by keyboard; the Queue
filters, searches, folds batches and compares an image result with its original.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import shutil
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.assets import T1, TOM_HANKS
from tests.browser_form import CHROMIUM, open_accordion, open_page, set_number
from tests.live_studio import StudioProcess
from tests.media import make_video
from tests.standins.maskers import make_occluder

pytest.importorskip("playwright.sync_api")

MODEL = "loop_occluder"
MODEL_PATH = f"/{MODEL}.onnx"
LICENCE = "MIT"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]


# -- a local HTTPS model server whose transfer waits half-way until the test lets it go --


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class GatedModelServer:
    """Serves one file over HTTPS; each transfer sends half, then waits for ``gate``."""

    def __init__(self, data: bytes, cert: Path, key: Path) -> None:
        self.data = data
        self.gate = threading.Event()
        self.halfway = threading.Event()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path != MODEL_PATH:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.data)))
                self.end_headers()
                half = len(server.data) // 2
                self.wfile.write(server.data[:half])
                self.wfile.flush()
                server.halfway.set()
                server.gate.wait(25)  # under the downloader's 30 s read timeout
                self.wfile.write(server.data[half:])

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{MODEL_PATH}"

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# -- fixtures: one studio, one browser ----------------------------------------------------


class Loop:
    def __init__(self, studio: StudioProcess, models: GatedModelServer, models_dir: Path):
        self.studio = studio
        self.models = models
        self.models_dir = models_dir
        self.model_sha256 = hashlib.sha256(models.data).hexdigest()

    @property
    def url(self) -> str:
        return self.studio.url


def write_catalogue(models_dir: Path, url: str, sha256: str) -> None:
    entry = {
        "name": MODEL,
        "kind": "occluder",
        "family": "xseg",
        "file": f"custom/{MODEL}.onnx",
        "sha256": sha256,
        "licence": LICENCE,
        "urls": [url],
    }
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "catalogue.json").write_text(json.dumps([entry]), encoding="utf-8")


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-loop")
    served = root / "served"
    served.mkdir()
    data = make_occluder(served / f"{MODEL}.onnx").read_bytes()
    cert, key = self_signed(root)
    models = GatedModelServer(data, cert, key)
    models_dir = root / "data" / "models"
    write_catalogue(models_dir, models.url, hashlib.sha256(data).hexdigest())
    studio = StudioProcess(
        root / "data", ["--models-dir", str(models_dir)], env={"SSL_CERT_FILE": str(cert)}
    ).start()
    yield Loop(studio, models, models_dir)
    studio.stop()
    models.close()


@pytest.fixture
def page(loop, browser):
    context, opened = open_page(browser, loop.url)
    yield opened
    context.close()


# -- helpers ------------------------------------------------------------------------------


def upload(page, sources: list[Path], targets: list[Path]) -> None:
    page.locator("#fs-sources input[type=file]").set_input_files([str(p) for p in sources])
    page.locator("#fs-targets input[type=file]").set_input_files([str(p) for p in targets])
    page.wait_for_selector("#fs-source-faces img", timeout=30_000)
    page.wait_for_selector("#fs-target-faces img", timeout=30_000)


def consent(page) -> None:
    page.locator("#fs-consent input[type=checkbox]").check()
    page.wait_for_function("!document.querySelector('#fs-submit').disabled", timeout=10_000)


def preview_token(page) -> str | None:
    figure = page.locator("#fs-preview .fs-compare")
    return figure.get_attribute("data-preview") if figure.count() else None


def wait_new_preview(page, old: str | None) -> str:
    page.wait_for_function(
        "(old) => { const f = document.querySelector('#fs-preview .fs-compare');"
        " return f && f.dataset.preview !== old; }",
        arg=old,
        timeout=60_000,
    )
    token = preview_token(page)
    assert token is not None
    return token


def data_uri_image(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,"), uri[:40]
    raw = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    assert image is not None
    return image


def url_image(page, url: str) -> np.ndarray:
    response = page.request.get(url)
    assert response.status == 200, url
    image = cv2.imdecode(np.frombuffer(response.body(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, url
    return image


def submit(page, expected: str = "Submitted 1") -> None:
    page.click("#fs-submit")
    page.wait_for_function(
        "(text) => document.querySelector('#fs-submit-status').innerText.includes(text)",
        arg=expected,
        timeout=30_000,
    )


def finished_job(page, url: str, job_id: str) -> dict:
    deadline = time.monotonic() + 180
    while True:
        job = page.request.get(f"{url}/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        page.wait_for_timeout(250)


def jobs_of(page, url: str) -> list[dict]:
    return page.request.get(f"{url}/api/v1/jobs").json()["jobs"]


def open_tab(page, name: str) -> None:
    """A tab by its name; on a narrow screen the last ones sit in the "More tabs" menu."""
    tab = page.locator("button[role=tab]", has_text=name)
    if not tab.count():
        page.locator("button[aria-label='More tabs']").click()
        tab = page.locator(".overflow-dropdown button", has_text=name)
    tab.first.click()


# -- the face galleries ---------------------------------------------------------------------


def gray48(image: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    crop = image[max(y1, 0) : y2, max(x1, 0) : x2]
    gray = cv2.cvtColor(
        cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
    )
    gray = gray.astype(np.float32)
    return (gray - gray.mean()) / (gray.std() + 1e-6)


def assert_whole_and_centred(engine, thumb: np.ndarray, what: str):
    """One face found in the thumbnail, fully inside it, its centre near the middle."""
    faces = engine.detect(thumb)
    assert faces, f"{what}: no face in the thumbnail"
    face = faces[0]
    height, width = thumb.shape[:2]
    assert height == width, f"{what}: thumbnails are square, got {width}x{height}"
    x1, y1, x2, y2 = (float(v) for v in face.box)
    assert x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height, (what, face.box)
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    assert abs(centre[0] - width / 2) <= 0.12 * width, (what, centre)
    assert abs(centre[1] - height / 2) <= 0.12 * height, (what, centre)
    assert (x2 - x1) >= 0.3 * width, f"{what}: the face fills too little of the thumbnail"
    return face


def test_face_galleries_show_whole_faces_centred_left_to_right(
    page, engine, tmp_path, record_property
):
    upload(page, [TOM_HANKS], [T1])
    page.wait_for_function(
        "document.querySelectorAll('#fs-target-faces .fs-face').length >= 6", timeout=30_000
    )
    shot = tmp_path / "face-galleries.png"
    page.locator("#fs-source-faces").screenshot(path=str(tmp_path / "source-faces.png"))
    page.locator("#fs-target-faces").screenshot(path=str(shot))
    record_property("screenshot", str(shot))
    print(f"face galleries screenshot: {shot}")

    # The source: one face, a close-up whose face nearly touches the photo's border.
    sources = page.locator("#fs-source-faces img")
    assert sources.count() == 1
    source = url_image(page, sources.first.get_attribute("src"))
    assert_whole_and_centred(engine, source, "source")
    shown = page.locator("#fs-source-faces img").first.bounding_box()
    assert shown["width"] <= 130 and shown["height"] <= 130, shown  # a thumbnail, not a strip

    # The target: every face, whole and centred, listed left to right with its index.
    cards = page.locator("#fs-target-faces .fs-face")
    photo = cv2.imread(str(T1))
    found = engine.detect(photo)
    assert cards.count() == len(found) >= 6
    originals = [gray48(photo, face.box) for face in found]
    matched = []
    for number in range(cards.count()):
        card = cards.nth(number)
        assert card.get_attribute("data-face") == str(number)
        assert card.locator(".fs-face-index").inner_text() == f"#{number}"
        thumb = data_uri_image(card.locator("img").get_attribute("src"))
        face = assert_whole_and_centred(engine, thumb, f"target face #{number}")
        mine = gray48(thumb, face.box)
        scores = [float((mine * other).mean()) for other in originals]
        best = int(np.argmax(scores))
        assert scores[best] > 0.6, (number, scores)
        matched.append(best)
    assert sorted(matched) == list(range(len(found))), matched  # each face once
    centres = [float(found[i].box[0] + found[i].box[2]) / 2 for i in matched]
    assert centres == sorted(centres), centres  # left to right


# -- the preview ------------------------------------------------------------------------------


def test_preview_appears_before_submit_and_follows_options(page, loop):
    upload(page, [TOM_HANKS], [T1])
    # The preview waits for the consent, as Submit does.
    page.wait_for_function(
        "document.querySelector('#fs-preview-note').innerText.includes('Confirm')",
        timeout=30_000,
    )
    assert preview_token(page) is None
    consent(page)
    first = wait_new_preview(page, None)
    assert page.locator("#fs-preview .fs-badge").inner_text().lower() == "preview"
    before = data_uri_image(page.locator("#fs-preview img.fs-before").get_attribute("src"))
    after_one = data_uri_image(page.locator("#fs-preview img.fs-after").get_attribute("src"))
    photo = cv2.imread(str(T1))
    assert after_one.shape == photo.shape
    scaled = cv2.resize(photo, (before.shape[1], before.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(before.astype(int) - scaled.astype(int)).mean() < 3  # the original frame
    assert np.abs(after_one.astype(int) - photo.astype(int)).mean() > 0.2  # a face changed
    assert "1 face(s)" in page.locator("#fs-preview figcaption").inner_text()

    # An option changes: the preview follows, before anything is submitted.
    page.locator("#fs-selector label", has_text="many").click()
    second = wait_new_preview(page, first)
    page.wait_for_function(
        "!document.querySelector('#fs-preview figcaption').innerText.includes('1 face(s)')",
        timeout=60_000,
    )
    second = preview_token(page)  # the many-faces preview (an earlier one may have come first)
    after_many = data_uri_image(page.locator("#fs-preview img.fs-after").get_attribute("src"))
    assert np.abs(after_many.astype(int) - after_one.astype(int)).mean() > 0.5

    open_accordion(page, "Mask and blending")
    set_number(page, "#fs-mask-blur", 0.9)
    # A preview already on its way (same options) may land first: wait for the next ones.
    token = second
    for _ in range(3):
        token = wait_new_preview(page, token)
        blurred = data_uri_image(page.locator("#fs-preview img.fs-after").get_attribute("src"))
        if np.abs(blurred.astype(int) - after_many.astype(int)).mean() > 0.05:
            break
    assert np.abs(blurred.astype(int) - after_many.astype(int)).mean() > 0.05
    assert jobs_of(page, loop.url) == []  # previews are not jobs

    # The comparison's split follows its range input, by keyboard.
    page.locator("#fs-preview .fs-compare-range").focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    position = page.locator("#fs-preview .fs-compare").evaluate(
        "f => f.style.getPropertyValue('--fs-pos')"
    )
    assert position == "60%"


# -- a source per face -------------------------------------------------------------------------


def test_face_to_source_assignment_is_the_jobs_face_map(page, loop):
    upload(page, [TOM_HANKS], [T1])
    consent(page)
    page.locator("#fs-face-source-1").select_option("0")
    page.locator("#fs-face-source-4").select_option("0")
    page.wait_for_selector('#fs-target-faces .fs-face[data-face="4"][data-source="0"]')
    token = wait_new_preview(page, None)
    page.wait_for_function(
        "document.querySelector('#fs-preview figcaption').innerText.includes('2 face(s)')",
        timeout=60_000,
    )
    assert preview_token(page) is not None and token
    submit(page)
    (job,) = jobs_of(page, loop.url)
    stored = page.request.get(f"{loop.url}/api/v1/jobs/{job['id']}").json()
    assert stored["options"]["face_map"] == [{"source": 0, "face": 1}, {"source": 0, "face": 4}]
    done = finished_job(page, loop.url, job["id"])
    assert done["status"] == "succeeded", done
    # The selector alone ("one") swaps one face; the mapping swapped the two assigned.
    assert done["result"]["faces_swapped"] == 2


# -- a video target: player, frame slider, trim ---------------------------------------------------


def test_video_player_frame_preview_and_trim(page, loop, tmp_path):
    from engine.video.probe import probe

    video = make_video(tmp_path / "clip.mp4", seconds=4.0, fps=10, size=(320, 240))
    upload(page, [TOM_HANKS], [video])
    page.wait_for_selector("#fs-video", state="visible", timeout=30_000)
    page.wait_for_selector("#fs-player video", state="attached", timeout=30_000)
    consent(page)
    first = wait_new_preview(page, None)
    assert "frame 0" in page.locator("#fs-preview figcaption").inner_text()
    set_number(page, "#fs-frame", 25)
    wait_new_preview(page, first)
    page.wait_for_function(
        "document.querySelector('#fs-preview figcaption').innerText.includes('frame 25')",
        timeout=60_000,
    )
    assert jobs_of(page, loop.url) == []

    set_number(page, "#fs-trim-start", 1.0)
    set_number(page, "#fs-trim-end", 2.5)
    page.wait_for_function(
        "document.querySelector('#fs-trim-end input[type=number]').value === '2.5'"
    )
    submit(page)
    (job,) = jobs_of(page, loop.url)
    assert job["options"]["trim_start"] == 1.0 and job["options"]["trim_end"] == 2.5
    done = finished_job(page, loop.url, job["id"])
    assert done["status"] == "succeeded", done
    result = tmp_path / "result.mp4"
    result.write_bytes(page.request.get(done["result_url"]).body())
    info = probe(result)
    assert abs(info.duration - 1.5) <= 0.15, info.duration  # 1.5 s, within a frame or so
    assert info.frames == pytest.approx(15, abs=1)


# -- a missing model, fetched where it is chosen -----------------------------------------------


def choose(page, dropdown: str, text: str) -> None:
    page.locator(f"{dropdown} input").first.click()
    page.locator("ul[role=listbox] li", has_text=text).first.click()


def test_missing_model_downloads_where_it_is_chosen(page, loop):
    target = loop.models_dir / "custom" / f"{MODEL}.onnx"
    assert not target.exists()
    open_accordion(page, "Mask and blending")
    choose(page, "#fs-occluder", f"{MODEL} — missing")
    offer = page.locator("#fs-model-offer-mask")
    page.wait_for_function(
        "document.querySelector('#fs-model-offer-mask').innerText.includes('Licence: MIT')",
        timeout=20_000,
    )
    assert MODEL in offer.inner_text() and "not installed" in offer.inner_text()
    fetch = page.locator("#fs-model-fetch-mask")
    fetch.wait_for(state="visible", timeout=10_000)
    fetch.click()
    # Half the file is over; the transfer waits for us: the progress bar is live.
    assert loop.models.halfway.wait(30)
    bar = page.locator("#fs-model-offer-mask [role=progressbar]")
    bar.wait_for(state="visible", timeout=20_000)
    label = bar.get_attribute("aria-label")  # the download's own progress: file and size
    assert f"{MODEL}.onnx" in label and "MB" in label, label
    loop.models.gate.set()
    page.wait_for_function(
        "document.querySelector('#fs-model-offer-mask').innerText.includes('is installed')",
        timeout=60_000,
    )
    assert hashlib.sha256(target.read_bytes()).hexdigest() == loop.model_sha256
    fetch.wait_for(state="hidden", timeout=10_000)
    # Selectable without a reload: the dropdown now lists it as installed.
    page.locator("#fs-occluder input").first.click()
    option = page.locator("ul[role=listbox] li", has_text=f"{MODEL} — installed")
    option.first.wait_for(timeout=10_000)
    option.first.click()
    assert page.locator("#fs-occluder input").first.input_value().startswith(MODEL)
    assert loop.models.requests == [MODEL_PATH]
    # The Models panel, drawn when the page loaded, follows the download too.
    open_tab(page, "Models")
    page.wait_for_selector(
        f"#fs-models tr[data-model='{MODEL}'][data-state='installed']", timeout=20_000
    )


# -- a phone's width, and the keyboard ------------------------------------------------------------


def test_phone_width_and_keyboard(loop, browser):
    # A phone set to Chinese: the new words come in the page's language too.
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(loop.url)
        page.wait_for_selector("#fs-submit", timeout=30_000)
        upload(page, [TOM_HANKS], [T1])
        consent(page)
        wait_new_preview(page, None)
        assert page.locator("#fs-preview .fs-badge").inner_text() == "预览"
        assert page.locator(".fs-face-ref").first.inner_text() == "用作参考"
        assert page.locator(".fs-face-thumb").first.get_attribute("alt") == "人脸 0"
        fits = "document.documentElement.scrollWidth"
        assert page.evaluate(fits) <= 390
        outside = page.evaluate(
            """() => Array.from(document.querySelectorAll(
                 'button, input, select, textarea, [role=tab], a[href]'))
               .filter(e => e.offsetParent !== null && e.type !== 'file')
               .filter(e => !e.closest('[aria-hidden=true]') && e.tabIndex >= 0)
               .map(e => [e.id || e.className || e.tagName, e.getBoundingClientRect()])
               .filter(([, r]) => r.width > 0 && (r.left < -1 || r.right > 391))
               .map(([name, r]) => name + ':' + Math.round(r.left) + '-' + Math.round(r.right))"""
        )
        assert outside == [], outside

        # By keyboard alone: a source for face #0, then face #2 as the reference.
        page.locator("#fs-face-source-0").focus()
        page.keyboard.press("ArrowDown")
        page.wait_for_selector('#fs-target-faces .fs-face[data-face="0"][data-source="0"]')
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.className")
        assert "fs-face-ref" in focused
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("", "none"), outline  # the focus is visible
        reference = page.locator('#fs-target-faces .fs-face-ref[data-face="2"]')
        reference.focus()
        page.keyboard.press("Enter")
        page.wait_for_selector('.fs-face-ref[data-face="2"][aria-pressed="true"]', timeout=20_000)
        assert page.locator("#fs-selector input[value=reference]").is_checked()

        for tab, panel in (
            ("队列", "#fs-queue .fs-toolbar"),
            ("验证", "#fs-tab-verify input[type=file]"),
            ("模型", "#fs-models table"),
            ("系统", "#fs-system table"),
        ):
            open_tab(page, tab)
            page.wait_for_selector(panel, state="attached", timeout=20_000)
            assert page.evaluate(fits) <= 390, tab
    finally:
        context.close()


# -- the Queue --------------------------------------------------------------------------------------


def test_queue_filters_searches_folds_batches_and_compares(page, loop, tmp_path):
    targets = []
    for number, width in enumerate((320, 360), 1):
        path = tmp_path / f"group{number}.jpg"
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(T1)), (width, int(width * 886 / 1280))))
        targets.append(path)
    solo = tmp_path / "solo.jpg"
    cv2.imwrite(str(solo), cv2.resize(cv2.imread(str(T1)), (400, 277)))
    response = page.request.post(
        f"{loop.url}/api/v1/jobs",
        multipart={
            "source": {"name": "me.png", "mimeType": "image/png", "buffer": TOM_HANKS.read_bytes()},
            "target": {"name": "solo.jpg", "mimeType": "image/jpeg", "buffer": solo.read_bytes()},
            "options": json.dumps({"consent": True}),
        },
        headers={"Origin": loop.url},
    )
    assert response.status == 202, response.text()
    upload(page, [TOM_HANKS], targets)
    consent(page)
    submit(page, "Submitted 2")

    queue = page.locator("#fs-queue")
    batch = queue.locator(".fs-batch")
    batch.wait_for(timeout=20_000)
    page.wait_for_selector('.fs-batch[data-status="succeeded"]', timeout=120_000)
    single = queue.locator(".fs-list > .fs-job")
    single.wait_for(timeout=20_000)
    page.wait_for_selector('.fs-list > .fs-job[data-status="succeeded"]', timeout=120_000)
    # One row per batch, its jobs folded in.
    assert batch.get_attribute("data-expanded") == "0"
    assert batch.locator(".fs-job").count() == 2
    assert not batch.locator(".fs-job").first.is_visible()
    toggle = batch.locator(".fs-batch-toggle")
    toggle.focus()
    page.keyboard.press("Enter")  # by keyboard
    assert toggle.get_attribute("aria-expanded") == "true"
    assert batch.locator(".fs-job").first.is_visible()

    # Filter by status and search by target name.
    status = queue.locator(".fs-filter-status")
    status.select_option("failed")
    assert queue.locator(".fs-job:visible").count() == 0
    assert "No job matches" in queue.locator(".fs-empty").inner_text()
    status.select_option("succeeded")
    assert queue.locator(".fs-job:visible").count() == 3
    status.select_option("")
    queue.locator(".fs-search").fill("group2")
    visible = queue.locator(".fs-job:visible")
    assert visible.count() == 1
    assert visible.first.locator(".fs-name").inner_text() == "group2.jpg"
    assert not single.is_visible()
    queue.locator(".fs-search").fill("solo")
    assert not batch.is_visible() and single.is_visible()

    # The image result over its original target: a before/after comparison.
    compare = single.locator(".fs-result-compare")
    page.wait_for_selector('.fs-list > .fs-job .fs-result-compare[data-compare="1"]')
    original = data_uri_image(compare.locator("img.fs-before").get_attribute("src"))
    expected = cv2.resize(
        solo_image := cv2.imread(str(solo)), (original.shape[1], original.shape[0])
    )
    assert solo_image.shape[:2] == (277, 400)
    assert np.abs(original.astype(int) - expected.astype(int)).mean() < 4
    result = url_image(page, compare.locator("img.fs-after").get_attribute("src"))
    assert result.shape[:2] == (277, 400)
    range_input = compare.locator(".fs-compare-range")
    range_input.focus()
    page.keyboard.press("End")
    assert compare.evaluate("f => f.style.getPropertyValue('--fs-pos')") == "100%"


# -- only the operator downloads ----------------------------------------------------------


@pytest.fixture(scope="module")
def locked(loop, tmp_path_factory):
    """A studio under --require-api-key with the same catalogue: an ordinary key, an admin."""
    from tests.live_studio import create_key

    data = tmp_path_factory.mktemp("ui-loop-locked")
    models_dir = data / "models"
    write_catalogue(models_dir, loop.models.url, loop.model_sha256)
    user_key = create_key(data, "carol")
    admin_key = create_key(data, "root", "--admin")
    studio = StudioProcess(data, ["--require-api-key", "--models-dir", str(models_dir)]).start()
    yield studio, models_dir, user_key, admin_key
    studio.stop()


def test_only_the_operator_is_offered_a_download(locked, loop):
    import httpx

    from tests.gradio_protocol import GradioPage

    studio, models_dir, user_key, admin_key = locked
    asked_before = list(loop.models.requests)
    for name, key, operator in (("carol", user_key, False), ("root", admin_key, True)):
        with httpx.Client(
            base_url=studio.url, timeout=60, headers={"Origin": studio.url}
        ) as client:
            client.get("/")
            answer = client.post("/login", data={"username": name, "password": key})
            assert answer.status_code == 200, answer.text
            page = GradioPage.open(client)
            offer = page.run(page.event_for("fs-occluder", "input"), [MODEL, "auto"])
            assert offer["success"], offer
            note, button = offer["output"]["data"][:2]
            assert MODEL in note and f"Licence: {LICENCE}" in note
            assert button["visible"] is operator, (name, button)
            if not operator:
                assert "Only the operator" in note
                # A crafted download event is refused all the same.
                fetch = page.run(page.event_for("fs-model-fetch-mask", "click"), [MODEL])
                assert fetch["success"], fetch
                assert "operator" in str(fetch["output"]["data"][0]), fetch
    assert not (models_dir / "custom" / f"{MODEL}.onnx").exists()
    assert loop.models.requests == asked_before  # nothing was fetched for anyone
