"""The demo page in a real headless browser (the system Chromium through chromedriver): load the page, upload
a photo through the file input, tick targets, generate, and check that the rendered outputs and the raw JSON
appear; a dropped file (a real ``drop`` event) is taken as the image; a bad request shows one line on the page.
A screenshot of the finished page is saved as ``demo.png`` in the test's tmp directory.

Needs ``apt-get install chromium chromium-driver`` and ``pip install selenium`` (``FOURM_CHROMIUM`` /
``FOURM_CHROMEDRIVER`` point elsewhere); it skips without them, and fails under ``FOURM_STRICT_SKIPS=1``."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path(os.environ.get("FOURM_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FOURM_CHROMEDRIVER", "/usr/bin/chromedriver"))
_HAVE = CHROMIUM.is_file() and CHROMEDRIVER.is_file() and importlib.util.find_spec("selenium") is not None
pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires("chromium", available=_HAVE,
                         reason=f"no headless browser: needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
                                f"chromium-driver) and selenium (pip install selenium)"),
]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1600", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, what, timeout: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: what(d) or None)


def _rendered_images(driver) -> list[dict]:
    """The figures of the outputs section whose image has been decoded (naturalWidth > 0)."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#outputs figure')].map((f) => ({
            cls: f.className, modality: f.dataset.modality,
            width: f.querySelector('img').naturalWidth, height: f.querySelector('img').naturalHeight}));""")


def test_upload_generate_and_see_the_outputs(browser, demo_server, photo_png, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "astronaut.jpg"
    Image.open(io.BytesIO(photo_png)).convert("RGB").save(photo, quality=92)
    browser.get(demo_server.url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#targets input[name=target]"))
    assert browser.find_element(By.ID, "model").text == demo_server.app.model
    boxes = {b.get_attribute("value"): b for b in browser.find_elements(By.CSS_SELECTOR, "#targets input")}
    assert set(boxes) == {"caption", "color_palette", "depth", "tok_rgb"} and boxes["depth"].is_selected()
    boxes["caption"].click()
    boxes["color_palette"].click()
    browser.find_element(By.ID, "file").send_keys(str(photo))
    _wait(browser, lambda d: d.find_element(By.ID, "preview").is_displayed())
    assert "astronaut.jpg" in browser.find_element(By.ID, "filename").text
    browser.find_element(By.ID, "steps").send_keys("2")
    browser.find_element(By.ID, "seed").clear()
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "run").click()

    figures = _wait(browser, lambda d: (lambda f: f if len(f) == 4 and all(x["width"] > 0 for x in f) else None)(
        _rendered_images(d)))
    assert [(f["cls"], f["modality"]) for f in figures] == [
        ("input", "rgb"), ("output", "caption"), ("output", "color_palette"), ("output", "depth")]
    assert all(max(f["width"], f["height"]) == 256 for f in figures)  # the tiles the server drew
    raw = json.loads(browser.find_element(By.ID, "json").text)
    assert list(raw["outputs"]) == ["caption", "color_palette", "depth"]  # the page's order of the targets
    assert raw["outputs"]["depth"]["value"]["shape"] == [224, 224, 1]
    assert isinstance(raw["outputs"]["caption"]["value"], str)
    assert raw["settings"]["seed"] == 7 and raw["settings"]["steps"] == 2 and raw["settings"]["grammar"] is True
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "status").text.startswith("done in ")
    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_a_dropped_photo_and_an_error_line(browser, demo_server, photo_png):
    from selenium.webdriver.common.by import By

    browser.get(demo_server.url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#targets input[name=target]"))
    # a real drop event carrying the photo, as a file dragged onto the drop zone delivers it
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
        """, base64.b64encode(photo_png).decode())
    _wait(browser, lambda d: "dropped.png" in d.find_element(By.ID, "filename").text)
    browser.find_element(By.ID, "steps").send_keys("1")
    browser.find_element(By.ID, "run").click()  # depth, ticked by default
    figures = _wait(browser, lambda d: (lambda f: f if len(f) == 2 and all(x["width"] > 0 for x in f) else None)(
        _rendered_images(d)))
    assert [f["modality"] for f in figures] == ["rgb", "depth"]

    for box in browser.find_elements(By.CSS_SELECTOR, "#targets input:checked"):
        box.click()
    browser.find_element(By.ID, "run").click()
    error = _wait(browser, lambda d: (lambda e: e if e.is_displayed() else None)(d.find_element(By.ID, "error")))
    assert error.text.startswith("targets must be a non-empty list") and "\n" not in error.text
    assert [f["modality"] for f in _rendered_images(browser)] == ["rgb", "depth"]  # the last outputs stay
