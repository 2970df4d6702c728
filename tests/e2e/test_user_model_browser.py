"""Real-browser tests of "Your model": upload a fine-tuned ResNet-18 (3 classes) and a labels file
through the sidebar's file uploaders, see the CAM page explain with those class names, and check that
a second browser context (a new session) does not see the first one's model. With the model and an
image set loaded, every page is visited through the navigation (same session) and screenshotted into
``$CNNVIZ_SHOTS`` (default ``/tmp/shots``)."""
from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import pytest
from test_browser import assert_no_errors, browser, menu_link, screenshot, server, wait_for_run  # noqa: F401 - fixtures

from cnnviz_ui.navigation import PAGES as NAV_PAGES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHOTS = Path(os.environ.get("CNNVIZ_SHOTS", "/tmp/shots"))
NAMES = ("apple", "banana", "cherry")
#: navigation title -> screenshot name, in menu order
PAGES = {p.title: f"um-{i}-{p.stem}" for i, p in enumerate(NAV_PAGES)}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torch
    import torchvision
    from PIL import Image

    folder = tmp_path_factory.mktemp("browser-user-model")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.resnet18(num_classes=3)
    out = {"model": folder / "fruit-resnet18.pth", "labels": folder / "fruit-labels.txt", "zip": folder / "set.zip"}
    torch.save(model.state_dict(), out["model"])
    out["labels"].write_text("\n".join(NAMES) + "\n")
    with zipfile.ZipFile(out["zip"], "w") as zf:
        for name, color in (("red.png", (220, 40, 40)), ("blue.png", (40, 40, 220)), ("green.png", (40, 180, 40))):
            image = Image.new("RGB", (160, 120), (235, 235, 235))
            image.paste(color, (40, 30, 120, 90))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())
        zf.writestr("broken.png", b"\x89PNG\r\n\x1a\n not an image")
    return out


@pytest.fixture
def context(browser):  # noqa: F811 - the fixture imported above
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield ctx
    ctx.close()


def sidebar(page):
    return page.locator("[data-testid='stSidebar']")


def choose(page, label: str, group: str = "") -> None:
    """Click option ``label`` of the sidebar radio whose text contains ``group``."""
    radios = sidebar(page).locator("[data-testid='stRadio']").filter(has_text=group)
    radios.locator("label").filter(has_text=label).first.click()
    wait_for_run(page)


def load_my_model(page, files) -> None:
    choose(page, "Your model", "Model source")
    uploader = sidebar(page).locator("[data-testid='stFileUploader']")
    uploader.filter(has_text="Model file").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(files["model"]))
    wait_for_run(page)
    uploader.filter(has_text="Class names").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(files["labels"]))
    wait_for_run(page)


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def test_upload_model_and_labels_then_a_new_session_does_not_see_it(server, context, browser, files):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    page.goto(f"{server}/cam")
    wait_for_run(page)
    load_my_model(page, files)
    assert_no_errors(page)
    side = sidebar(page).inner_text()
    assert "fruit-resnet18.pth" in side and "architecture detected: resnet18" in side
    text = main_text(page)
    at = text.find("Explaining")
    assert at >= 0 and any(f"Explaining {n}" in text[at:at + 40] for n in NAMES), text[at:at + 200]
    assert page.locator("[data-testid='stPlotlyChart']").first.is_visible()
    screenshot(page, SHOTS, "um-0-cam-loaded")

    other = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        second = other.new_page()
        second.goto(f"{server}/cam")
        wait_for_run(second)
        assert "fruit" not in sidebar(second).inner_text() and "fruit" not in main_text(second)
        assert not any(n in main_text(second) for n in NAMES)
        choose(second, "Your model", "Model source")
        assert "fruit" not in sidebar(second).inner_text()
        assert "needs a loaded model" in main_text(second)
        screenshot(second, SHOTS, "um-0-second-session")
    finally:
        other.close()
    # The first session still has its model.
    menu_link(page, "CNN basics").click()
    wait_for_run(page)
    assert "fruit-resnet18.pth" in sidebar(page).inner_text()


def test_every_page_with_my_model_and_an_image_set(server, context, files):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    page.goto(f"{server}/")
    wait_for_run(page)
    load_my_model(page, files)
    choose(page, "Upload", "Image source")
    sidebar(page).locator("[data-testid='stFileUploader']").filter(has_text="zip").get_by_test_id(
        "stFileUploaderDropzoneInput").set_input_files(str(files["zip"]))
    wait_for_run(page)
    assert "broken.png" in sidebar(page).inner_text()  # one warning line; the good images are kept
    assert "Look at (3 images)" in sidebar(page).inner_text()
    for title, shot in PAGES.items():
        menu_link(page, title).click()
        wait_for_run(page)
        assert_no_errors(page)
        assert "fruit-resnet18.pth" in sidebar(page).inner_text(), f"{title}: the model stays loaded"
        if title == "CAM & Grad-CAM":
            page.get_by_text("Images × methods").click()
            wait_for_run(page)
            assert_no_errors(page)
        if title == "Applications":
            page.get_by_role("button", name="Audit 3 images").click()
            wait_for_run(page)
            assert_no_errors(page)
            assert "3 images" in main_text(page)
        screenshot(page, SHOTS, shot)
