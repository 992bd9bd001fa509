"""Driving the studio's page from Playwright: Debian's Chromium, and filling the Gradio
form as a person would."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SETTLE_MS = 600  # how long a typed number must hold before it counts as set
TRIES = 3


def launch_chromium(playwright):
    """Headless Debian Chromium (``playwright`` is a started ``sync_playwright()``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_accordion(page, title: str) -> None:
    page.locator("button", has_text=title).first.click()


def open_page(browser, url: str, locale: str = "en-US"):
    """A fresh browser context (a new visitor) on the studio's page, once it is ready:
    ``(context, page)``; close the context when done."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#fs-submit", timeout=30_000)
    return context, page


def set_number(page, selector: str, value: float) -> None:
    """Type ``value`` into a slider's or number's box and leave it.

    A slider whose accordion opened a moment ago can still be reset to its initial
    value by its own mount (Gradio 6 renders an accordion's contents when it opens); a
    person could not type that fast, a test can. So the value must hold for
    ``SETTLE_MS``, or it is typed again."""
    box = page.locator(f"{selector} input[type=number]").first
    for _ in range(TRIES):
        box.fill(str(value))
        box.press("Enter")
        box.blur()
        page.wait_for_timeout(SETTLE_MS)
        if float(box.input_value()) == float(value):
            return
    raise AssertionError(f"{selector} does not keep {value} (it shows {box.input_value()})")
