"""AppTest of the pages' exports (PNG / NumPy / JSON / CSV downloads whose bytes are checked), the
controls that expose the engine's remaining capabilities (guided Deep Dream, octave scale, per-layer
style weights, class-logit and neuron maximization, sanity check and pointing game on any model with
the visitor's own masks), the sidebar's device reaching every page, and stale state after a model
switch. Long work runs with tiny step counts."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from cnnviz_core.scenes import generate_scene

pytestmark = pytest.mark.slow  # each test starts the app and runs models: seconds each

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


@pytest.fixture()
def downloads(monkeypatch):
    """``{file_name: data}`` of every download button drawn (callables are kept: call them to get
    the bytes, as Streamlit does on a click)."""
    seen: dict[str, object] = {}
    original = DeltaGenerator.download_button

    def record(self, label, data, file_name=None, *args, **kwargs):
        seen[file_name] = data
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    return seen


def start(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT).run()
    at.switch_page(f"pages/{page}.py").run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def data_of(downloads: dict, name: str) -> bytes:
    assert name in downloads, sorted(downloads)
    data = downloads[name]
    data = data() if callable(data) else data
    return data.encode() if isinstance(data, str) else data


def png(downloads: dict, name: str) -> np.ndarray:
    data = data_of(downloads, name)
    assert data.startswith(PNG_MAGIC)
    image = np.asarray(Image.open(io.BytesIO(data)))
    assert image.ndim == 3 and image.shape[0] > 8 and image.shape[1] > 8
    return image


def npz(downloads: dict, name: str) -> dict:
    with np.load(io.BytesIO(data_of(downloads, name))) as f:
        return {k: f[k] for k in f.files}


def table(downloads: dict, name: str) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(data_of(downloads, name).decode())))
    assert rows
    return rows


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def scene_pair(seed: int, size: int = 128) -> tuple[bytes, bytes]:
    scene = generate_scene(seed, objects=1, size=size)
    return png_bytes(scene.image), png_bytes(((scene.mask > 0) * 255).astype(np.uint8))


# ---- exports -------------------------------------------------------------------------------------


def test_basics_exports_stage_grid_maps_and_layer_table(downloads):
    at = start("basics")
    assert_clean(at)
    stem = at.session_state["basics_conv"]
    name = next(n for n in downloads if n.startswith("cnnviz-stage-") and n.endswith(".png"))
    png(downloads, name)
    arrays = npz(downloads, name.replace(".png", ".npz"))
    assert "image" in arrays and any(k.startswith("Convolution_") for k in arrays) and stem is not None
    conv = next(v for k, v in arrays.items() if k.startswith("Convolution_"))
    assert conv.ndim == 3 and conv.dtype == np.float32
    doc = json.loads(data_of(downloads, name.replace(".png", ".json")))
    assert doc["stages"][0]["name"] == "Convolution" and len(doc["channels"]) == 16
    rows = table(downloads, "cnnviz-layers-shapes-cnn.csv")
    assert len(rows) == len(at.dataframe[0].value) and {"layer", "type", "MACs (M)"} <= set(rows[0])
    top = json.loads(data_of(downloads, "cnnviz-prediction.json"))
    assert len(top["top"]) == 5 and 0 <= top["top"][0]["probability"] <= 1


def test_architectures_table_csv_and_kernels_png(downloads):
    at = start("architectures")
    assert_clean(at)
    rows = table(downloads, "cnnviz-architectures.csv")
    assert [r["model"] for r in rows] == list(at.dataframe[0].value["model"])
    png(downloads, "cnnviz-first-layer-kernels.png")


def test_filters_exports_kernels_maps_and_maximization(downloads):
    at = start("filters")
    assert_clean(at)
    layer = at.session_state["filters_layer"]
    png(downloads, f"cnnviz-kernels-{layer}.png")
    weights = np.load(io.BytesIO(data_of(downloads, f"cnnviz-kernels-{layer}.npy")))
    assert weights.ndim == 4
    png(downloads, f"cnnviz-feature-maps-{layer}.png")
    arrays = npz(downloads, f"cnnviz-feature-maps-{layer}.npz")
    assert arrays["feature_maps"].shape[0] == weights.shape[0] and len(arrays["shown_channels"]) == 16
    doc = json.loads(data_of(downloads, f"cnnviz-feature-maps-{layer}.json"))
    assert doc["layer"] == layer and np.asarray(doc["maps"]).shape[0] == 16
    at.slider(key="filters_am_steps").set_value(8).run()
    at.button(key="filters_am_run").click().run()
    assert_clean(at)
    png(downloads, "cnnviz-activation-maximization.png")
    history = json.loads(data_of(downloads, "cnnviz-activation-maximization.json"))["history"]
    assert len(history) == 8


def test_backprop_exports_grid_and_raw_maps(downloads):
    at = start("backprop")
    assert_clean(at)
    image = png(downloads, "cnnviz-backprop-maps.png")
    assert image.shape[1] > image.shape[0]  # four panels on one row
    arrays = npz(downloads, "cnnviz-backprop-maps.npz")
    assert {"image", "saliency", "deconvnet", "guided_backprop"} <= set(arrays)
    assert arrays["saliency"].shape[0] == 3
    doc = json.loads(data_of(downloads, "cnnviz-backprop-maps.json"))
    assert set(doc["maps"]) == {"saliency", "deconvnet", "guided_backprop"}


def test_applications_shortcut_png_sanity_and_pointing_csv(downloads):
    at = start("applications")
    assert_clean(at)
    png(downloads, "cnnviz-shortcut-gradcam.png")
    at.multiselect(key="app_sanity_methods").set_value(["gradcam"]).run()
    at.button(key="app_sanity_run").click().run()
    assert_clean(at)
    rows = table(downloads, "cnnviz-sanity-check.csv")
    assert {r["method"] for r in rows} == {"Grad-CAM"} and float(rows[0]["spearman"]) <= 1.0
    at.multiselect(key="app_pg_methods").set_value(["gradcam", "saliency"])
    at.slider(key="app_pg_count").set_value(5).run()
    at.button(key="app_pg_run").click().run()
    assert_clean(at)
    rows = table(downloads, "cnnviz-pointing-leaderboard.csv")
    assert sorted(r["method"] for r in rows) == ["Grad-CAM", "Saliency (vanilla gradient)"]
    assert all(0.0 <= float(r["pointing"]) <= 1.0 for r in rows)
    doc = json.loads(data_of(downloads, "cnnviz-pointing-leaderboard.json"))
    assert doc["source"] == "Generated scenes" and len(doc["rows"]) == 2


# ---- the engine's capabilities on the pages -----------------------------------------------------


def test_deep_dream_octave_scale_and_guide_image(downloads):
    at = start("deep-dream")
    at.slider(key="dd_octaves").set_value(2)
    at.slider(key="dd_steps").set_value(2)
    at.select_slider(key="dd_octave_scale").set_value(2.0)
    at.select_slider(key="dd_size").set_value(128).run()
    assert_clean(at)
    assert any("Cost:" in c.value and "2 octaves" in c.value for c in at.caption)
    at.radio(key="dd_guide_source").set_value("Upload").run()
    at.file_uploader(key="dd_guide_upload").set_value(("guide.png", scene_pair(3)[0], "image/png")).run()
    assert_clean(at)
    assert any("guide adds one forward pass" in c.value for c in at.caption)
    at.button(key="dream_run").click().run()
    assert_clean(at)
    state = at.session_state["task:dream"]
    assert state.status == "done" and state.params.guide is not None and state.params.octave_scale == 2.0
    assert any("(guided)" in a["text"] for s in specs(at) for a in s["layout"].get("annotations", []))
    png(downloads, "cnnviz-deep-dream.png")


def test_style_transfer_per_layer_weights(downloads):
    at = start("style-transfer")
    at.multiselect(key="st_layers").set_value(["conv1_1", "conv2_1"]).run()
    assert_clean(at)
    at.select_slider(key="st_lw_conv1_1").set_value(4.0)
    at.select_slider(key="st_lw_conv2_1").set_value(0.0)
    at.slider(key="st_steps").set_value(5)
    at.select_slider(key="st_size").set_value(64)
    at.radio(key="st_opt").set_value("adam").run()
    at.button(key="style_run").click().run()
    assert_clean(at)
    state = at.session_state["task:style"]
    assert state.status == "done" and state.params.layer_weights == (4.0, 0.0)
    assert state.params.device == at.session_state["cnnviz_selection"].device
    png(downloads, "cnnviz-style-transfer.png")


def test_filters_class_logit_and_neuron_maximization():
    at = start("filters")
    at.slider(key="filters_am_steps").set_value(8)
    at.radio(key="filters_am_kind").set_value("Class logit").run()
    assert_clean(at)
    assert any("whole" in c.value for c in at.caption)
    at.selectbox(key="filters_am_class").select(3).run()  # "star"
    at.button(key="filters_am_run").click().run()
    assert_clean(at)
    state = at.session_state["task:filters_am"]
    assert state.status == "done" and state.params.class_index == 3 and state.params.layer is None
    at.radio(key="filters_am_kind").set_value("Neuron").run()
    at.number_input(key="filters_am_y").set_value(1)
    at.number_input(key="filters_am_x").set_value(2).run()
    at.button(key="filters_am_run").click().run()
    assert_clean(at)
    state = at.session_state["task:filters_am"]
    assert state.status == "done" and state.params.position == (1, 2) and state.params.channel is not None


def test_pointing_game_on_uploaded_mask_pairs_and_any_model():
    at = start("applications")
    assert at.selectbox(key="app_pg_model").value == "__sidebar__"
    at.radio(key="app_pg_source").set_value("Upload image + mask pairs").run()
    files = []
    for i in range(3):
        image, mask = scene_pair(100 + i)
        files += [(f"img{i}.png", image, "image/png"), (f"img{i}.mask.png", mask, "image/png")]
    files.append(("lonely.png", scene_pair(9)[0], "image/png"))
    at.file_uploader(key="app_pg_upload").set_value(files).run()
    assert_clean(at)
    assert any("3 image + mask pairs ready" in c.value for c in at.caption)
    assert any("lonely.png" in c.value for c in at.caption)
    at.multiselect(key="app_pg_methods").set_value(["gradcam", "saliency"]).run()
    at.button(key="app_pg_run").click().run()
    assert_clean(at)
    state = at.session_state["task:app_pg"]
    assert state.status == "done" and {r.n for r in state.result} == {3}


def test_pointing_game_and_sanity_on_an_imagenet_model_with_a_mask_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA_ROOT", str(tmp_path))
    folder = tmp_path / "pairs"
    (folder / "masks").mkdir(parents=True)
    for i in range(2):
        image, mask = scene_pair(200 + i, size=96)
        (folder / f"p{i}.png").write_bytes(image)
        (folder / "masks" / f"p{i}.mask.png").write_bytes(mask)
    at = start("applications")
    at.selectbox(key="sb_model").select("resnet18").run()
    at.checkbox(key="sb_random").check().run()
    assert not at.exception
    sources = at.radio(key="app_pg_source").options
    assert "Generated scenes" not in sources  # ImageNet classes: scenes cannot score it
    at.radio(key="app_pg_source").set_value("Folder under the data roots").run()
    at.text_input(key="app_pg_folder").input("pairs").run()
    assert_clean(at)
    assert any("2 image + mask pairs ready" in c.value for c in at.caption)
    at.multiselect(key="app_pg_methods").set_value(["gradcam"]).run()
    at.button(key="app_pg_run").click().run()
    assert_clean(at)
    state = at.session_state["task:app_pg"]
    assert state.status == "done" and state.result[0].n == 2 and "resnet18" in state.params.model
    at.text_input(key="app_pg_folder").input("/etc").run()  # outside the data roots: one line, no read
    assert not at.exception and len(at.error) == 1 and "\n" not in at.error[0].value
    at.text_input(key="app_pg_folder").input("pairs").run()
    at.multiselect(key="app_sanity_methods").set_value(["gradcam"]).run()
    assert any("copies the model once" in c.value for c in at.caption)
    at.button(key="app_sanity_run").click().run()
    assert_clean(at)
    sanity = at.session_state["task:app_sanity"]
    assert sanity.status == "done" and "resnet18" in sanity.params.model


# ---- device and stale state ----------------------------------------------------------------------


def test_every_model_of_style_and_applications_follows_the_sidebar_device(monkeypatch):
    """The device the sidebar chose is the one every page's models are loaded on."""
    from cnnviz_core.engine import Engine

    calls: list[tuple[str, object]] = []
    original = Engine.model

    def spy(self, name, weights="default", device=None, **kwargs):
        calls.append((str(name), device))
        return original(self, name, weights, device, **kwargs)

    monkeypatch.setattr(Engine, "model", spy)
    at = start("applications")
    assert_clean(at)
    device = at.session_state["cnnviz_selection"].device
    fixed = [d for n, d in calls if n in ("shapes-cnn", "shapes-cnn-biased")]
    assert fixed and all(d == device for d in fixed), calls
    calls.clear()
    at.switch_page("pages/style-transfer.py").run()
    at.slider(key="st_steps").set_value(5)
    at.select_slider(key="st_size").set_value(64)
    at.radio(key="st_opt").set_value("adam").run()
    at.button(key="style_run").click().run()
    assert_clean(at)
    assert ("vgg19", device) in calls, calls


def test_switching_the_model_leaves_no_stale_layer_channel_or_class():
    """The sidebar's model changes while a page shows model-dependent pickers: each comes back with
    the new model's layers, channels and classes (shapes-cnn -> ResNet-18 -> shapes-cnn)."""
    from cnnviz_core.scenes import CLASSES

    at = start("filters")
    at.selectbox(key="filters_layer").select("stage4.conv2").run()
    at.radio(key="filters_am_kind").set_value("Class logit").run()
    at.selectbox(key="filters_am_class").select(5).run()
    assert at.selectbox(key="filters_am_class").options[5] == "ring"
    at.selectbox(key="sb_model").select("resnet18").run()
    at.checkbox(key="sb_random").check().run()
    assert_clean(at)
    resnet = at.session_state["cnnviz_selection"].handle
    assert resnet.name == "resnet18"
    assert at.selectbox(key="filters_layer").value == resnet.conv_layers[0]
    klass = at.selectbox(key="filters_am_class")
    assert klass.value == 0 and klass.options[:3] == resnet.class_names[:3]
    at.radio(key="filters_am_kind").set_value("Channel").run()
    assert at.number_input(key="filters_am_channel").max == 63  # conv1 of ResNet-18: 64 filters

    at.switch_page("pages/deep-dream.py").run()
    at.selectbox(key="dd_layer").select("layer4.1.conv2").run()
    at.segmented_control(key="dd_mode").set_value("One channel").run()
    at.number_input(key="dd_channel").set_value(500).run()
    at.selectbox(key="sb_model").select("shapes-cnn").run()
    assert_clean(at)
    shapes = at.session_state["cnnviz_selection"].handle
    assert shapes.name == "shapes-cnn"
    assert at.selectbox(key="dd_layer").value in shapes.conv_layers
    assert at.number_input(key="dd_channel").value <= at.number_input(key="dd_channel").max < 500

    at.switch_page("pages/backprop.py").run()
    at.selectbox(key="bp_target").select(5).run()  # ring
    at.selectbox(key="sb_model").select("resnet18").run()
    assert_clean(at)
    target = at.selectbox(key="bp_target")  # ResNet-18's classes, its top-1 first, not "ring"
    assert target.value == -1 and len(target.options) == resnet.num_classes + 1
    top = target.options[0].removeprefix("Top prediction: ").rsplit(" (", 1)[0]
    assert top in resnet.class_names and not {o.split(" (")[0] for o in target.options[1:6]} & set(CLASSES)

    at.switch_page("pages/basics.py").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert at.selectbox(key="basics_conv").value == int(table.index[table["layer"] == "conv1"][0])
