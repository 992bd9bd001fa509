"""The studio in a real browser: Playwright driving Debian's headless Chromium.

One person uploads a source and a target video, submits, and watches the
progress bar move in the Queue view; the server is restarted while the job
runs, and the same page (no reload) follows the job to its result. After a
reload the job is still there; a second browser sees none of it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.assets import TOM_HANKS
from tests.browser_form import CHROMIUM, launch_chromium
from tests.live_studio import REPO, StudioProcess
from tests.media import make_video

playwright_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = REPO / "test-artifacts"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]


def job_rows(page):
    return page.locator("#fs-queue .fs-job")


def open_queue(page) -> None:
    page.locator("button[role=tab]", has_text="Queue").click()
    page.wait_for_selector("#fs-queue .fs-conn", state="attached", timeout=20_000)
    page.wait_for_function(
        "document.querySelector('#fs-queue') && "
        "document.querySelector('#fs-queue').dataset.loaded === '1'",
        timeout=20_000,
    )


def test_submit_watch_restart_reload_and_isolation(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=6.0, fps=10, size=(320, 240))
    data = tmp_path / "data"
    server = StudioProcess(data, []).start()
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            person = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
            page = person.new_page()
            page.goto(server.url)
            page.wait_for_selector("#fs-submit", timeout=30_000)
            cookie = next(c for c in person.cookies() if c["name"] == "fs_owner")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

            page.locator("#fs-sources input[type=file]").set_input_files(str(TOM_HANKS))
            page.locator("#fs-targets input[type=file]").set_input_files(str(video))
            page.wait_for_selector("#fs-source-faces img", timeout=30_000)  # uploaded, face found
            page.wait_for_selector("#fs-target-faces img", timeout=30_000)
            # Submitting without confirming consent is impossible: the button is disabled.
            assert page.locator("#fs-submit").is_disabled()
            page.locator("#fs-consent input[type=checkbox]").check()
            page.wait_for_function("!document.querySelector('#fs-submit').disabled", timeout=10_000)
            page.click("#fs-submit")
            page.wait_for_function(
                "document.querySelector('#fs-submit-status').innerText.includes('Submitted 1')",
                timeout=20_000,
            )
            # Submit switches to the Queue tab; the row appears and its bar moves.
            row = job_rows(page).first
            row.wait_for(timeout=20_000)
            job_id = row.get_attribute("data-job-id")
            seen: list[float] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                value = float(row.get_attribute("data-progress") or 0)
                running = row.get_attribute("data-status") == "running"
                if running and 0 < value < 1 and (not seen or value != seen[-1]):
                    seen.append(value)
                if len(seen) >= 2 and seen[-1] > seen[-2]:  # the bar moved forward
                    break
                time.sleep(0.05)
            assert len(seen) >= 2 and seen[-1] > seen[-2], seen
            width = row.locator(".fs-bar-fill").evaluate("node => node.style.width")
            assert width.endswith("%") and 0 < float(width[:-1]) < 100
            assert row.locator(".fs-attempts").inner_text() == "Attempt 1 of 3"

            # Restart the server while the job runs; the open page follows it to the end.
            server.stop()
            server = StudioProcess(data, [], port=server.port).start()
            page.wait_for_selector(
                f'.fs-job[data-job-id="{job_id}"][data-status="succeeded"]', timeout=120_000
            )
            page.wait_for_selector(f'.fs-job[data-job-id="{job_id}"] video.fs-result-media')
            assert row.locator(".fs-status").inner_text() == "succeeded"
            assert row.locator(".fs-attempts").inner_text() == ""  # the restart charged none
            api = page.request.get(f"{server.url}/api/v1/jobs/{job_id}/history").json()
            events = [entry["event"] for entry in api["history"]]
            assert "released" in events, events  # it really was interrupted by the restart
            assert events[-1] == "succeeded"
            submitted = next(e for e in api["history"] if e["event"] == "submitted")
            consent = submitted["detail"]["consent"]
            assert consent["asserted"] is True and consent["owner"] and consent["at"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "queue-view.png"), full_page=True)

            # A reload (same browser, same cookie) still shows the finished job.
            page.reload()
            page.wait_for_selector("#fs-submit", timeout=30_000)
            open_queue(page)
            restored = page.locator(f'.fs-job[data-job-id="{job_id}"]')
            restored.wait_for(timeout=20_000)
            assert restored.get_attribute("data-status") == "succeeded"
            src = restored.locator("video").get_attribute("src")
            assert src.endswith(f"/api/v1/jobs/{job_id}/result")
            assert page.request.get(src).status == 200

            # Someone else (another browser, Chinese locale) sees none of it.
            other = browser.new_context(locale="zh-CN")
            stranger = other.new_page()
            stranger.goto(server.url)
            stranger.wait_for_selector("#fs-submit", timeout=30_000)
            stranger.locator("button[role=tab]", has_text="队列").click()
            stranger.wait_for_function(
                "document.querySelector('#fs-queue') && "
                "document.querySelector('#fs-queue').dataset.loaded === '1'",
                timeout=20_000,
            )
            assert job_rows(stranger).count() == 0
            assert "还没有任务" in stranger.locator("#fs-queue .fs-empty").inner_text()
            assert stranger.request.get(src).status == 404
            browser.close()
    finally:
        server.stop()
    log = Path(server.log_path).read_text()
    assert f"job={job_id}" in log


def test_batch_actions_models_and_system_panels(tmp_path):
    import cv2

    from tests.assets import T1

    targets = []
    for number, width in enumerate((320, 360), 1):
        path = tmp_path / f"group{number}.jpg"
        image = cv2.imread(str(T1))
        cv2.imwrite(str(path), cv2.resize(image, (width, int(width * 886 / 1280))))
        targets.append(str(path))
    with StudioProcess(tmp_path / "data", []) as server, playwright_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 1000})
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(server.url)
        page.wait_for_selector("#fs-submit", timeout=30_000)
        page.locator("#fs-sources input[type=file]").set_input_files(str(TOM_HANKS))
        page.locator("#fs-targets input[type=file]").set_input_files(targets)
        page.wait_for_selector("#fs-source-faces img", timeout=30_000)
        page.wait_for_selector("#fs-target-faces img", timeout=30_000)
        page.locator("#fs-consent input[type=checkbox]").check()
        page.wait_for_function("!document.querySelector('#fs-submit').disabled", timeout=10_000)
        page.click("#fs-submit")
        page.wait_for_function(
            "document.querySelector('#fs-submit-status').innerText.includes('Submitted 2')",
            timeout=20_000,
        )
        batch = page.locator("#fs-queue .fs-batch")
        batch.wait_for(timeout=20_000)
        assert batch.locator(".fs-job").count() == 2
        page.wait_for_selector('.fs-batch[data-complete="1"] .fs-batch-zip', timeout=60_000)
        assert "2 of 2 done" in batch.locator(".fs-batch-count").inner_text()
        zip_url = batch.locator(".fs-batch-zip").get_attribute("href")
        assert page.request.get(server.url + zip_url).status == 200
        images = page.locator(".fs-job[data-status=succeeded] img.fs-result-media")
        assert images.count() == 2

        # A batch is one row with its jobs folded in: unfold it to act on one of them.
        assert batch.get_attribute("data-expanded") == "0"
        batch.locator(".fs-batch-toggle").click()
        first = batch.locator(".fs-job").first
        first.locator("[data-action=share]").click()
        share = first.locator(".fs-share-url")
        share.wait_for(timeout=10_000)
        url = share.input_value()
        assert "/api/v1/shared/" in url
        anonymous = browser.new_context()
        assert anonymous.request.get(url).status == 200
        first_id = first.get_attribute("data-job-id")
        first.locator("[data-action=delete]").click()
        page.wait_for_selector(f'.fs-job[data-job-id="{first_id}"]', state="detached")
        assert page.request.get(f"{server.url}/api/v1/jobs/{first_id}").status == 404

        page.locator("button[role=tab]", has_text="Models").click()
        page.wait_for_selector('#fs-models tr[data-model="mtcnn"][data-state="embedded"]')
        assert page.locator('#fs-models tr[data-model="inswapper_128"]').count() == 1
        page.locator("button[role=tab]", has_text="System").click()
        page.wait_for_selector('#fs-system tr[data-device="cpu:0"]')
        page.click("#fs-system-refresh")
        page.wait_for_function(
            "document.querySelector('#fs-system tr[data-status=\"succeeded\"] td:nth-child(2)')"
            ".innerText === '1'",
            timeout=20_000,
        )
        browser.close()
