"""Real-browser tests: the dashboard served by ``streamlit run`` and driven by Debian's Chromium
through Playwright. The first visit after a start shows the frame and a loading state at once and
never Streamlit's raw ``pages/`` file list; every page (enumerated from ``cnnviz_ui.navigation.PAGES``)
must finish its run without an exception or an error alert and show its main Plotly chart (the home
page: a card with a live thumbnail per topic); uploads of a good and of a corrupt image; Stop
interrupts a long run.

Screenshots go to a temporary folder and are copied to ``artifacts/screenshots/``.
Under CI (``CI=true``) a missing Chromium fails the tests instead of skipping them.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from cnnviz_ui.local_server import CHROMIUM, CHROMIUM_ARGS, REPO, ServerDidNotStart, local_server
from cnnviz_ui.navigation import HOME, PAGES as NAV_PAGES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = REPO / "artifacts" / "screenshots"
#: url path -> screenshot name (and test id), in menu order; the home page is the default ("/")
PAGES = {("" if p is HOME else p.stem): f"{i}-{p.stem}" for i, p in enumerate(NAV_PAGES)}
#: the file names Streamlit's legacy pages/ mode would list in the sidebar
RAW_NAMES = ["dashboard", *sorted(p.stem for p in NAV_PAGES)]
RUN_TIMEOUT_MS = 180_000
#: records, from the first DOM change on, when main content first shows and whether the sidebar ever
#: lists the raw pages/ file names (``window.__cnnviz_first``)
FIRST_PAINT_OBSERVER = """
(() => {
  const raw = new Set(%s);
  const rec = window.__cnnviz_first = {content: null, menu: null, raw: null};
  const check = () => {
    const now = performance.now();
    const sidebar = document.querySelector("[data-testid='stSidebar']");
    if (sidebar) {
      const texts = [...sidebar.querySelectorAll("a, [data-testid='stSidebarNav'] span")]
        .map(e => e.innerText.trim().split("\\n").pop().trim());
      if (rec.raw === null && texts.some(t => raw.has(t))) rec.raw = texts.join(" | ");
      if (rec.menu === null && sidebar.querySelector(".st-key-cnnviz_menu a")) rec.menu = now;
    }
    const main = document.querySelector("[data-testid='stMain']");
    if (rec.content === null && main && [...main.querySelectorAll("[data-testid='stElementContainer']")]
        .some(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; })) rec.content = now;
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, characterData: true});
})();
""" % RAW_NAMES.__repr__().replace("'", '"')


def _require_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI is set: not skipping)")
        pytest.skip(message)


@contextlib.contextmanager
def _serve():
    """The dashboard on a free localhost port (:func:`cnnviz_ui.local_server.local_server`, full error
    details); yields its base URL once it answers."""
    try:
        with local_server(args=["--client.showErrorDetails", "full"]) as running:
            yield running.url
    except ServerDidNotStart as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def server():
    """The dashboard's server for this module's tests; yields its base URL."""
    _require_browser()
    with _serve() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots():
    folder = Path(tempfile.mkdtemp(prefix="cnnviz-shots-"))
    yield folder
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in folder.glob("*.png"):
        shutil.copy2(png, ARTIFACTS / png.name)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def wait_for_run(page, timeout: int = RUN_TIMEOUT_MS) -> None:
    """Wait until the script run finished and no skeleton placeholder is left (after a short delay,
    so that a rerun triggered by the previous action has started)."""
    page.wait_for_timeout(500)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stSkeleton']\")", timeout=timeout)
    page.wait_for_timeout(300)


def assert_no_errors(page, allowed: int = 0) -> None:
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() <= allowed, [errors.nth(i).inner_text() for i in range(errors.count())]


def screenshot(page, folder: Path, name: str) -> None:
    """Full-height screenshot: grow the viewport to the height of Streamlit's scrolling main area."""
    height = page.evaluate(
        "() => { const m = document.querySelector(\"[data-testid='stMain']\");"
        " return Math.max(1000, m ? m.scrollHeight : document.body.scrollHeight); }")
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 40, 9000)})
    page.wait_for_timeout(600)
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})


def menu_link(page, title: str):
    """The sidebar menu's link to the page titled ``title`` (``cnnviz_ui.navigation.render_menu``)."""
    return page.locator(".st-key-cnnviz_menu").get_by_text(title, exact=True)


def test_first_visit_shows_frame_and_loading_state_never_the_file_list(browser, shots):
    """A fresh server's first visit: the menu and a loading state appear before the engine has
    loaded (first paint), the raw pages/ file list never; then the home page's cards."""
    with _serve() as url:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        page.add_init_script(FIRST_PAINT_OBSERVER)
        try:
            started = time.time()
            page.goto(f"{url}/")
            page.wait_for_function("() => window.__cnnviz_first.content !== null", timeout=RUN_TIMEOUT_MS)
            first = time.time() - started
            page.screenshot(path=str(shots / "0-first-paint.png"))
            assert menu_link(page, NAV_PAGES[1].title).is_visible()
            assert page.get_by_test_id("stHeading").first.is_visible()
            wait_for_run(page)
            done = time.time() - started
            record = page.evaluate("window.__cnnviz_first")
            print(f"first visit: first content {first:.2f} s, page done {done:.2f} s after the server answered")
            assert record["raw"] is None, f"the sidebar listed the raw pages/ files: {record['raw']}"
            assert record["menu"] is not None
            assert_no_errors(page)
            main = page.get_by_test_id("stMain")
            for info in NAV_PAGES[1:]:
                assert main.get_by_test_id("stPageLink").filter(has_text=info.title).first.is_visible()
        finally:
            context.close()


def test_deep_link_as_first_request_after_start(server, page):
    """The server's first request is a page URL (Streamlit is still in its legacy pages/ mode)."""
    page.add_init_script(FIRST_PAINT_OBSERVER)
    page.goto(f"{server}/deep-dream")
    wait_for_run(page)
    assert page.get_by_text("Page not found").count() == 0
    assert "/deep-dream" in page.url
    assert menu_link(page, "CAM & Grad-CAM").is_visible()  # the dashboard's own menu
    assert page.get_by_test_id("stSidebar").get_by_role("link", name="dashboard").count() == 0
    assert page.evaluate("window.__cnnviz_first.raw") is None, "the raw pages/ file list was shown"
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(state="visible", timeout=60_000)
    assert_no_errors(page)


@pytest.mark.parametrize("path", [pytest.param(path, id=name) for path, name in PAGES.items()])
def test_page_renders(server, page, shots, path):
    page.goto(f"{server}/{path}")
    wait_for_run(page)
    assert_no_errors(page)
    if path == "":  # home: a card with a live thumbnail per topic
        thumbs = page.get_by_test_id("stMain").get_by_test_id("stImage")
        thumbs.nth(len(NAV_PAGES) - 2).wait_for(state="visible", timeout=60_000)
        assert thumbs.count() == len(NAV_PAGES) - 1
    else:
        chart = page.locator("[data-testid='stPlotlyChart']").first
        chart.wait_for(state="visible", timeout=60_000)
        assert chart.is_visible()
    screenshot(page, shots, PAGES[path])


def test_home_card_links_to_its_page(server, page):
    page.goto(f"{server}/")
    wait_for_run(page)
    page.get_by_test_id("stMain").get_by_test_id("stPageLink").filter(has_text="CAM & Grad-CAM").click()
    wait_for_run(page)
    assert "/cam" in page.url
    assert page.get_by_test_id("stHeading").filter(has_text="CAM & Grad-CAM").first.is_visible()
    assert_no_errors(page)


def test_sidebar_choice_persists_across_pages(server, page):
    page.goto(f"{server}/")
    wait_for_run(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stSelectbox").filter(has_text="Sample").locator("input").click()
    page.keyboard.type("two shapes")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_for_run(page)
    menu_link(page, "CAM & Grad-CAM").click()
    wait_for_run(page)
    assert "/cam" in page.url
    assert sidebar.get_by_text("Scene: two shapes (seed 11) · 128×128").is_visible()
    assert_no_errors(page)


def _choose_upload(page) -> None:
    page.locator("[data-testid='stSidebar'] label").filter(has_text="Upload").first.click()
    wait_for_run(page)


def test_upload_image(server, page, shots, tmp_path):
    from PIL import Image

    image = Image.new("RGB", (160, 120), (250, 250, 250))
    for x in range(40, 120):
        for y in range(30, 90):
            image.putpixel((x, y), (200, 30, 30))
    path = tmp_path / "red-square.png"
    image.save(path)
    page.goto(f"{server}/cam")
    wait_for_run(page)
    _choose_upload(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    wait_for_run(page)
    assert_no_errors(page)
    assert page.locator("[data-testid='stSidebar']").get_by_text("red-square.png").first.is_visible()
    assert page.locator("[data-testid='stPlotlyChart']").first.is_visible()
    screenshot(page, shots, "9-upload")


def test_corrupt_upload_is_one_line_error(server, page, shots, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really a png" * 20)
    page.goto(f"{server}/basics")
    wait_for_run(page)
    _choose_upload(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    wait_for_run(page)
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 1
    text = errors.first.locator("[data-testid='stMarkdownContainer']").inner_text().strip()
    assert "broken.png" in text and "\n" not in text, text
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stPlotlyChart']").first.is_visible()  # the app keeps running
    screenshot(page, shots, "10-corrupt-upload")


def test_stop_interrupts_deep_dream(server, page, shots):
    page.goto(f"{server}/deep-dream")
    wait_for_run(page)
    slider_steps = page.get_by_test_id("stSlider").filter(has_text="Steps per octave")
    slider_steps.get_by_role("slider").focus()
    page.keyboard.press("End")  # the maximum: 40 steps per octave, long enough to be stopped
    page.wait_for_timeout(1500)
    wait_for_run(page)
    assert "40" in slider_steps.inner_text()
    page.get_by_role("button", name="Dream").click()
    past_first_preview = re.compile(r"step ([5-9]|\d\d+)/")  # previews come every 4 steps
    page.get_by_test_id("stProgress").filter(has_text=past_first_preview).first.wait_for(state="visible",
                                                                                        timeout=60_000)
    started = time.time()
    page.get_by_role("button", name="Stop").click()
    wait_for_run(page, timeout=60_000)
    assert time.time() - started < 30
    warning = page.locator("[data-testid='stAlertContentWarning']").filter(has_text="stopped at step")
    assert warning.count() == 1, "no 'stopped' message after pressing Stop"
    assert page.get_by_text("After (stopped at step").first.is_visible()  # the partial result is shown
    assert_no_errors(page)
    screenshot(page, shots, "11-deep-dream-stopped")
