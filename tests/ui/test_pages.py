"""AppTest of every dashboard page on the bundled model: runs without exception or error, shows
its charts, and reruns cleanly when the main controls change. Long work uses tiny step counts."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnviz_ui.navigation import HOME, PAGES as NAV_PAGES

pytestmark = pytest.mark.slow  # each test starts the app and runs models: seconds each

REPO = Path(__file__).resolve().parents[2]
PAGES = [p.stem for p in NAV_PAGES if p is not HOME]  # the pages with charts (home shows cards)
TIMEOUT = 180


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


def start(page: str | None = None) -> AppTest:
    """The app through its entrypoint (sidebar + navigation), then ``page`` chosen in the navigation."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    return at


def open_directly(page: str) -> AppTest:
    """A fresh session whose first run is the page itself (no sidebar interaction yet)."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT)
    at.switch_page(f"pages/{page}.py")
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(spec: dict) -> list[str]:
    return [a["text"] for a in spec.get("layout", {}).get("annotations", [])]


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_directly_and_draws_charts(page):
    at = open_directly(page)
    assert_clean(at)
    charts = specs(at)
    assert charts, f"{page} shows no Plotly chart"
    assert all(c["data"] for c in charts)
    info = next(p for p in NAV_PAGES if p.stem == page)
    assert at.header[0].value == f"{info.material_icon} {info.title}"  # the title comes from navigation.PAGES
    # chosen chips wrap onto more rows: in a column Streamlit would scroll them and hide some choices
    assert all(m.proto.HasField("wrap") and m.proto.wrap for m in at.multiselect), page


def _links(at: AppTest) -> list:
    return [(link.proto.label, link.proto.page) for link in at.get("page_link")]


def test_home_is_the_default_page_with_a_card_per_topic():
    at = start()
    assert_clean(at)
    assert at.header[0].value == f"{HOME.material_icon} {HOME.title}"
    links = _links(at)
    # the sidebar menu: every page once, in navigation order (ours: Streamlit's own menu is off)
    assert [label for label, _ in links[-len(NAV_PAGES):]] == [p.title for p in NAV_PAGES]
    # the cards: one link per topic, to its page's URL
    cards = links[:-len(NAV_PAGES)]
    assert cards == [(f"**{p.title}**", p.stem) for p in NAV_PAGES if p is not HOME]
    assert len(at.main.image) == len(PAGES), "one live thumbnail per card"
    assert not any("No preview" in c.value for c in at.caption)
    assert any("predicts" in m.value for m in at.markdown)


def test_home_thumbnails_are_cached_per_model_and_image():
    from cnnviz_ui.state import get_engine

    at = start()
    handle = get_engine().model("shapes-cnn", at.session_state["cnnviz_selection"].weights)
    calls, hook = _count_forwards(handle)
    try:
        at.run()  # a rerun with the same model and image: every thumbnail from the cache
    finally:
        hook.remove()
    assert_clean(at)
    assert calls == [], "the home page's thumbnails ran the model again"
    at.selectbox(key="sb_sample").select("Scene: two shapes (seed 11)").run()
    assert_clean(at)
    assert len(at.main.image) == len(PAGES)


def test_home_card_opens_its_page():
    at = start()
    at.switch_page("pages/cam.py").run()  # what a card's st.page_link does
    assert_clean(at)
    assert at.header[0].value == ":material/local_fire_department: CAM & Grad-CAM"


def test_basics_stage_by_stage_and_layer_table():
    at = start("basics")
    assert_clean(at)
    bar = next(s for s in specs(at) if s["data"][0]["type"] == "bar")
    assert len(bar["data"][0]["y"]) == 5
    assert sum(1 for s in specs(at) if s["data"][0]["type"] == "heatmap") >= 1
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) >= 20  # one row per executed layer
    table = at.dataframe[0].value
    last_conv = int(table.index[table["type"] == "Conv2d"][-1])  # row index of the last convolution
    at.selectbox(key="basics_conv").select(last_conv).run()
    assert_clean(at)
    at.slider(key="basics_n").set_value(8).run()
    assert_clean(at)
    grid = next(s for s in specs(at) if s["data"][0]["type"] == "heatmap")
    assert len(grid["layout"]["annotations"]) == 8


def test_architectures_table_and_charts():
    at = start("architectures")
    assert_clean(at)
    rows = at.dataframe[0].value
    assert list(rows["model"]) == ["alexnet", "zfnet", "vgg16", "vgg19", "resnet18", "resnet50"]
    scatter = [s for s in specs(at) if s["data"][0]["type"] == "scatter"]
    assert len(scatter) == 3 and "vgg16" in scatter[0]["data"][0]["text"]
    kernels = [s for s in specs(at) if s["data"][0]["type"] == "image"]
    assert len(kernels) == 4


def test_filters_layer_change_and_activation_maximization():
    at = start("filters")
    at.selectbox(key="filters_layer").select("stage2.conv1").run()
    assert_clean(at)
    at.radio(key="filters_view").set_value("per_channel").run()
    assert_clean(at)
    at.slider(key="filters_am_steps").set_value(8).run()
    at.button(key="filters_am_run").click().run()
    assert_clean(at)
    assert any("Mean activation" in m.value for m in at.markdown)


def test_backprop_three_methods_then_guided_gradcam():
    at = start("backprop")
    assert_clean(at)
    names = [t for s in specs(at) for t in titles(s)]
    assert {"Saliency (vanilla gradient)", "Deconvnet", "Guided backpropagation"} <= set(names)
    at.toggle(key="bp_guided_gradcam").set_value(True).run()
    at.radio(key="bp_display").set_value("Signed RGB").run()
    assert_clean(at)
    assert "Guided Grad-CAM" in [t for s in specs(at) for t in titles(s)]


def test_deep_dream_runs_and_offers_download():
    at = start("deep-dream")
    at.slider(key="dd_octaves").set_value(1)
    at.slider(key="dd_steps").set_value(2)
    at.select_slider(key="dd_size").set_value(128).run()
    at.button(key="dream_run").click().run()
    assert_clean(at)
    assert any(t.startswith("After") for s in specs(at) for t in titles(s))
    assert len(at.get("download_button")) == 1
    at.segmented_control(key="dd_mode").set_value("One channel").run()
    assert_clean(at)


def test_style_transfer_random_weights_runs_with_loss_curves():
    at = start("style-transfer")
    assert_clean(at)
    assert at.radio(key="st_weights").value.startswith("Random")  # offline: only the mechanics demo
    assert any("not in the cache" in i.value for i in at.info)
    at.slider(key="st_steps").set_value(5)
    at.select_slider(key="st_size").set_value(64)
    at.radio(key="st_opt").set_value("adam").run()
    at.button(key="style_run").click().run()
    assert_clean(at)
    lines = [s for s in specs(at) if s["data"][0]["type"] == "scatter"]
    names = {d["name"] for d in lines[0]["data"]}
    assert {"total", "content × 1", "style × 1e6"} <= names, names


def _count_forwards(handle):
    calls = []
    hook = handle.model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, hook


def test_cam_display_controls_run_no_model_pass():
    at = start("cam")
    assert_clean(at)
    grid = specs(at)[0]
    assert len([d for d in grid["data"] if d["type"] == "image"]) == 6  # six default methods
    assert any(d["type"] == "heatmap" for d in grid["data"])  # hover values
    from cnnviz_ui.state import get_engine

    handle = get_engine().model("shapes-cnn", at.session_state["cnnviz_selection"].weights)
    calls, hook = _count_forwards(handle)
    try:
        at.slider(key="cam_opacity").set_value(0.8).run()
        at.selectbox(key="cam_cmap").select("Inferno").run()
        at.toggle(key="cam_shared").set_value(True).run()
    finally:
        hook.remove()
    assert_clean(at)
    assert calls == [], "changing colormap/opacity/scale ran the model"
    assert specs(at)[0]["data"][-1]["marker"]["colorbar"]["title"]["text"] == "value"


def test_cam_per_class_per_layer_and_slow_method():
    at = start("cam")
    at.segmented_control(key="cam_view").set_value("Per class").run()
    assert_clean(at)
    assert len([d for d in specs(at)[0]["data"] if d["type"] == "image"]) == 4
    at.segmented_control(key="cam_view").set_value("Per layer").run()
    assert_clean(at)
    assert len([d for d in specs(at)[0]["data"] if d["type"] == "image"]) >= 2
    at.segmented_control(key="cam_view").set_value("Methods side by side").run()
    at.multiselect(key="cam_methods").set_value(["gradcam", "scorecam"]).run()
    at.slider(key="cam_sc_channels").set_value(8).run()
    at.button(key="cam_slow_run").click().run()
    assert_clean(at)
    names = titles(specs(at)[0])
    assert "Score-CAM" in " ".join(names) and "Grad-CAM" in " ".join(names)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Report (HTML)", "Grid (PNG)", "Maps (NumPy .npz)", "Maps (JSON)"], labels


def test_cam_deletion_insertion_auc_beside_each_map():
    at = start("cam")
    at.multiselect(key="cam_methods").set_value(["gradcam", "layercam"]).run()
    at.button(key="cam_auc_run").click().run()
    assert_clean(at)
    names = titles(specs(at)[0])
    assert len(names) == 2 and all("deletion" in n and "insertion" in n for n in names), names
    curves = [s for s in specs(at) if s["data"][0]["type"] == "scatter"]
    assert len(curves) == 2 and all(len(c["data"]) == 2 for c in curves)  # deletion, insertion x 2 methods


def test_applications_shortcut_grid_and_two_models():
    at = start("applications")
    assert_clean(at)
    shortcut = specs(at)[0]
    assert len([d for d in shortcut["data"] if d["type"] == "image"]) == 3 * 3  # scenes x (scene + 2 models)
    at.slider(key="app_count").set_value(1).run()
    at.radio(key="app_tag").set_value("match").run()
    assert_clean(at)
    assert len([d for d in specs(at)[0]["data"] if d["type"] == "image"]) == 3


def test_applications_sanity_check_and_pointing_game():
    at = start("applications")
    at.multiselect(key="app_sanity_methods").set_value(["gradcam"]).run()
    at.button(key="app_sanity_run").click().run()
    assert_clean(at)
    curve = next(s for s in specs(at) if "randomized" in s["layout"].get("title", {}).get("text", ""))
    assert {d["name"] for d in curve["data"]} == {"Grad-CAM (Spearman)", "Grad-CAM (SSIM)"}
    assert curve["data"][0]["y"][0] == 1.0 and len(curve["data"][0]["y"]) >= 3
    at.multiselect(key="app_pg_methods").set_value(["gradcam", "saliency"])
    at.slider(key="app_pg_count").set_value(5).run()
    at.button(key="app_pg_run").click().run()
    assert_clean(at)
    bar = next(s for s in specs(at) if s["data"][0]["type"] == "bar")
    assert sorted(bar["data"][0]["y"]) == ["Grad-CAM", "Saliency (vanilla gradient)"]
    assert all(0.0 <= v <= 1.0 for v in bar["data"][0]["x"])


def test_sidebar_choice_persists_across_pages():
    at = start("basics")
    at.selectbox(key="sb_sample").select("Scene: two shapes (seed 11)").run()
    assert at.session_state["cnnviz_selection"].image_label == "Scene: two shapes (seed 11)"
    at.switch_page("pages/cam.py").run()
    assert_clean(at)
    assert at.session_state["cnnviz_selection"].image_label == "Scene: two shapes (seed 11)"
    assert at.selectbox(key="sb_sample").value == "Scene: two shapes (seed 11)"


def test_model_needing_download_is_one_line_error_offline():
    at = start("cam")
    at.selectbox(key="sb_model").select("resnet18").run()
    assert not at.exception
    message = at.error[0].value
    assert len(at.error) == 1 and "offline" in message and "resnet18-" in message and "\n" not in message
    assert any("needs a loaded model" in i.value for i in at.info)
    at.checkbox(key="sb_random").check().run()  # random weights: the page works again
    assert_clean(at)
    assert specs(at)


def test_upload_good_and_corrupt_images():
    at = start("basics")
    at.radio(key="sb_source").set_value("Upload").run()
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, format="PNG")
    at.file_uploader(key="sb_upload").set_value(("green.png", buf.getvalue(), "image/png")).run()
    assert_clean(at)
    assert at.session_state["cnnviz_selection"].image_label == "green.png"
    at.file_uploader(key="sb_upload").set_value(("broken.jpg", b"\xff\xd8\xff garbage", "image/jpeg")).run()
    assert not at.exception
    assert len(at.error) == 1 and "broken.jpg" in at.error[0].value and "\n" not in at.error[0].value
    assert specs(at), "the page keeps working on the sample image"


def test_engine_error_in_long_work_is_one_line_error(monkeypatch):
    import cnnviz_core.featureviz as featureviz
    from cnnviz_core import ParameterError

    def broken(*args, **kwargs):
        raise ParameterError("jitter must be in 0..256, got 999")

    monkeypatch.setattr(featureviz, "deep_dream", broken)
    at = start("deep-dream")
    at.button(key="dream_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["jitter must be in 0..256, got 999"]
    at.slider(key="dd_jitter").set_value(8).run()  # the page keeps working; the message stays one line
    assert not at.exception and len(at.error) == 1
