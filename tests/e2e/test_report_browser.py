"""Real-browser checks of the share link and the HTML report.

- The report built from real CAM results opens from ``file://`` in Chromium with every network
  request blocked, and shows every map (each ``<img>`` decoded, ``naturalWidth > 0``).
- A shared link opened in a fresh browser context reproduces the view; switching the sidebar's model
  from shapes-cnn to ResNet-50 leaves no class of the previous model in the class picker.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from test_browser import browser, server, wait_for_run  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _offline_context(browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context, blocked


def test_report_opens_offline_and_shows_every_map(browser, tmp_path: Path, shapes_model,  # noqa: F811
                                                  shapes_scene_image):
    from cnnviz_core import image_digest
    from cnnviz_core.attribution import explain_detailed
    from cnnviz_ui.report import cam_report

    methods = ["gradcam", "gradcam++", "eigencam", "saliency"]
    results = explain_detailed(shapes_model, shapes_scene_image, methods, None, None)

    class Sel:
        image_label, digest = "scene <11>", image_digest(shapes_scene_image)

    view = np.asarray(shapes_model.crop(shapes_scene_image), dtype=np.uint8)
    text = cam_report(shapes_model, Sel(), view, results,
                      lambda r: np.abs(r.raw).max(axis=0) if r.family == "gradient" else r.raw,
                      params={}, costs={}, curves={}, layer=shapes_model.default_layer,
                      predictions=shapes_model.predict(shapes_scene_image, 3), colormap="Jet", opacity=0.5,
                      shared_scale=False, link="http://localhost:8501/cam?methods=gradcam")
    path = tmp_path / "cnnviz-cam-report.html"
    path.write_text(text, encoding="utf-8")
    context, blocked = _offline_context(browser)
    try:
        page = context.new_page()
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        widths = page.evaluate("() => [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == len(methods) + 1 and all(w > 0 for w in widths), widths
        captions = page.locator("figcaption b").all_inner_texts()
        assert captions[1:] == ["Grad-CAM", "Grad-CAM++", "Eigen-CAM", "Saliency (vanilla gradient)"]
        assert page.get_by_text("scene <11>").first.is_visible()  # escaped, shown as text
        assert blocked == []  # nothing even tried the network
    finally:
        context.close()


def test_shared_link_in_a_fresh_browser_and_no_stale_class_picker(server, browser):  # noqa: F811
    link = f"{server}/cam?methods=gradcam,layercam&cmap=Inferno&opacity=0.7&scale=shared&sample=photo-coffee"
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = context.new_page()
        page.goto(link)
        wait_for_run(page)
        page.locator("[data-testid='stMain'] [data-testid='stPlotlyChart']").first.wait_for(state="visible")
        titles = page.locator("[data-testid='stMain'] [data-testid='stPlotlyChart'] .annotation-text").evaluate_all(
            "nodes => nodes.map(n => n.textContent)")  # SVG text has no innerText
        assert [t for t in titles if t in ("Grad-CAM", "LayerCAM")] == ["Grad-CAM", "LayerCAM"], titles
        assert "opacity=0.7" in page.url and "model=shapes-cnn" in page.url and "cmap=Inferno" in page.url
        main = page.get_by_test_id("stMain")
        assert main.get_by_role("combobox", name="Colormap").input_value() == "Inferno"  # the value is the input's
        shown_methods = main.get_by_test_id("stMultiSelect").filter(has_text="Methods").first.inner_text()
        assert "LayerCAM" in shown_methods and "Eigen-CAM" not in shown_methods, shown_methods  # the widget too
        sidebar = page.get_by_test_id("stSidebar")
        assert sidebar.get_by_text("Photo: coffee").first.is_visible()

        picker = main.get_by_role("combobox", name="Explain class")
        before = picker.input_value()
        assert "Top prediction" in before
        sidebar.get_by_test_id("stSelectbox").filter(has_text="Model").locator("input").click()
        page.keyboard.type("resnet50")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        wait_for_run(page)
        box = sidebar.get_by_test_id("stCheckbox").filter(has_text="Random weights")
        if not box.locator("input").is_checked():
            box.locator("label").first.click()
        wait_for_run(page)
        page.locator("[data-testid='stMain'] [data-testid='stPlotlyChart']").first.wait_for(state="visible")
        shown = picker.input_value()
        explained = main.locator("[data-testid='stMarkdownContainer']").filter(has_text="Explaining").first.inner_text()
        name = explained.split("Explaining", 1)[1].split(" at layer")[0].strip()
        assert shown != before and name in shown, (before, shown, explained)
        assert "model=resnet50" in page.url and "layer=layer4" in page.url
    finally:
        context.close()
