"""CAM page: shareable views (URL <-> widget state), every method parameter with its cost, no stale
class picker after a model switch, and the one-file HTML report (built by a pure function)."""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180


# ---- pure parts: URL encoding and the report ------------------------------------------------------
def test_url_values_decode_and_encode_back():
    from cnnviz_ui import share

    query = {"model": "resnet50", "random": "1", "sample": "photo-coffee", "methods": "gradcam,layercam",
             "layer": "layer4", "target": "281", "cmap": "Inferno", "opacity": "0.7", "scale": "shared",
             "image": "sample", "sc": "exact", "ig_base": "zero", "occ_patch": "20"}
    state = share.seed_values(query)
    assert state["sb_model"] == "resnet50" and state["sb_random"] is True
    assert state["sb_sample"] == "Photo: coffee"  # a readable slug in the URL, the real name in the state
    assert state["cam_methods"] == ["gradcam", "layercam"] and state["cam_target"] == 281
    assert state["cam_opacity"] == 0.7 and state["cam_shared"] is True and state["cam_sc_mode"] == "exact"
    back = share.encode_state(share.SIDEBAR + share.PAGES["cam"], state)
    assert {k: v for k, v in back.items() if v is not None} == {**query}


def test_invalid_url_values_are_ignored():
    from cnnviz_ui import share

    state = share.seed_values({"model": "no-such-net", "opacity": "lots", "target": "-3", "scale": "weird",
                               "sample": "nope", "cols": "4"})
    assert state == {"cam_cols": 4}


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs.get("src", ""))
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith("data:"):
                self.external.append(attrs[name])


def _report_data(**overrides):
    from cnnviz_ui.report import ReportData, ReportMap, png_bytes

    png = png_bytes(np.full((8, 8, 3), 120, dtype=np.uint8))
    data = dict(
        model_name="my<net>", weights_label="file ft.pth", model_identity="resnet18|file:" + "ab" * 32 + "|1234",
        image_label="<script>alert(1)</script>.png", image_digest="cd" * 32, image_png=png,
        maps=[ReportMap("Grad-CAM", "gradcam", png, cost="1 (shared pass)", deletion=0.1, insertion=0.6),
              ReportMap("Score-CAM", "scorecam", png, params={"batch_size": 16, "channels": None}, cost="C forwards",
                        notes=["approximation & <b>"])],
        target_name="tabby & <cat>", target_index=281, layer="layer4", predictions=[(281, "tabby & <cat>", 0.9)],
        version="0.1.0", created="2026-01-01T00:00:00+00:00")
    data.update(overrides)
    return ReportData(**data)


def test_report_is_self_contained_escaped_and_audited():
    from cnnviz_ui.report import build_report

    text = build_report(_report_data())
    parser = _Images()
    parser.feed(text)
    assert len(parser.sources) == 3 and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    for src in parser.sources:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert parser.external == [] and "<script" not in text and "http" not in text.split("<body>", 1)[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in text and "my&lt;net&gt;" in text
    assert "tabby &amp; &lt;cat&gt;" in text and "approximation &amp; &lt;b&gt;" in text
    assert "ab" * 32 in text and "cd" * 32 in text and "0.1.0" in text  # file sha256, image hash, version
    assert "0.100" in text and "0.600" in text and "channels = all" in text


def test_report_of_real_results_has_every_map(shapes_model, shapes_scene_image):
    from cnnviz_core import image_digest
    from cnnviz_core.attribution import explain_detailed
    from cnnviz_ui.report import cam_report

    results = explain_detailed(shapes_model, shapes_scene_image, ["gradcam", "eigencam", "saliency"], None, None)

    class Sel:
        image_label, digest = "scene & co", image_digest(shapes_scene_image)

    view = np.asarray(shapes_model.crop(shapes_scene_image), dtype=np.uint8)
    text = cam_report(shapes_model, Sel(), view, results,
                      lambda r: np.abs(r.raw).max(axis=0) if r.family == "gradient" else r.raw,
                      params={}, costs={}, curves={}, layer=shapes_model.default_layer,
                      predictions=shapes_model.predict(shapes_scene_image, 3), colormap="Jet", opacity=0.5,
                      shared_scale=False)
    parser = _Images()
    parser.feed(text)
    assert len(parser.sources) == 4  # the input and three maps
    assert "scene &amp; co" in text and Sel.digest in text and shapes_model.identity in text


# ---- the page ------------------------------------------------------------------------------------


@pytest.fixture
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


def open_with(query: dict) -> AppTest:
    """A fresh session opening ``/cam?query`` (a shared link)."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page("pages/cam.py")
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def grid_titles(at: AppTest) -> list[str]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [a["text"].split("<br>")[0] for a in spec["layout"]["annotations"]]


@pytest.mark.slow
def test_shared_link_reproduces_the_view_and_the_url_follows_changes(clear_caches):
    link = {"sample": "scene-two-shapes-seed-11", "methods": "gradcam,layercam", "layer": "stage4.conv2",
            "target": "1", "cmap": "Inferno", "opacity": "0.7", "scale": "shared", "cols": "3"}
    at = open_with(link)
    assert_clean(at)
    assert at.selectbox(key="sb_sample").value == "Scene: two shapes (seed 11)"
    assert at.multiselect(key="cam_methods").value == ["gradcam", "layercam"]
    assert at.selectbox(key="cam_layer").value == "stage4.conv2" and at.selectbox(key="cam_target").value == 1
    assert at.selectbox(key="cam_cmap").value == "Inferno" and at.slider(key="cam_opacity").value == 0.7
    assert at.toggle(key="cam_shared").value is True and at.slider(key="cam_cols").value == 3
    assert grid_titles(at) == ["Grad-CAM", "LayerCAM"]
    assert {k: at.query_params[k][0] if isinstance(at.query_params[k], list) else at.query_params[k]
            for k in link} == link
    at.slider(key="cam_opacity").set_value(0.3).run()
    at.multiselect(key="cam_methods").set_value(["eigencam"]).run()
    assert_clean(at)
    q = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert q["opacity"] == "0.3" and q["methods"] == "eigencam" and q["model"] == "shapes-cnn"
    assert any("Copy link" in str(p.proto) for p in at.get("popover")) or at.get("popover")
    codes = [c.value for c in at.code]
    assert any("opacity=0.3" in c and "methods=eigencam" in c for c in codes), codes


@pytest.mark.slow
def test_switching_to_resnet50_resets_the_class_picker_and_layer(clear_caches):
    at = open_with({"target": "2"})
    assert_clean(at)
    assert at.selectbox(key="cam_target").value == 2
    at.selectbox(key="sb_model").select("resnet50").run()
    at.checkbox(key="sb_random").check().run()
    assert_clean(at)
    picker = at.selectbox(key="cam_target")
    assert picker.value == -1  # back to "the top prediction"
    top_label = picker.options[0]
    assert top_label.startswith("Top prediction: ") and "ring" not in top_label
    top_name = top_label[len("Top prediction: "):].rsplit(" (", 1)[0]
    explained = next(m.value for m in at.markdown if m.value.startswith("Explaining"))
    assert f"**{top_name}**" in explained, (top_label, explained)
    assert at.selectbox(key="cam_layer").value == "layer4"
    assert "target" not in at.query_params and at.query_params["model"] in ("resnet50", ["resnet50"])


@pytest.mark.slow
def test_slow_method_parameters_with_their_cost(clear_caches):
    at = open_with({"methods": "scorecam,smoothgrad,integrated_gradients,occlusion,ablationcam"})
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "Score-CAM cost — C forwards: 64 masked forwards (top 64 of" in captions
    assert "Ablation-CAM cost" in captions and "tail" in captions
    assert "SmoothGrad cost — samples: 20 forward + backward passes" in captions
    assert "Integrated Gradients cost — steps: 32" in captions and "Occlusion cost — windows:" in captions
    at.radio(key="cam_sc_mode").set_value("exact").run()
    at.slider(key="cam_sg_samples").set_value(5)
    at.slider(key="cam_sg_noise").set_value(0.3)
    at.slider(key="cam_ig_steps").set_value(8)
    at.radio(key="cam_ig_baseline").set_value("zero")
    at.slider(key="cam_occ_patch").set_value(32)
    at.slider(key="cam_occ_stride").set_value(32).run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert re.search(r"Score-CAM cost — C forwards: \d+ masked forwards\.", captions), captions
    assert "Occlusion cost — windows: 16 occluded forwards at 128 px" in captions
    at.multiselect(key="cam_methods").set_value(["scorecam", "integrated_gradients", "occlusion"]).run()
    at.button(key="cam_slow_run").click().run()
    assert_clean(at)
    assert grid_titles(at) == ["Score-CAM", "Integrated Gradients", "Occlusion"]
    results = at.session_state["task:cam_slow"].result
    assert "approximation" not in results["scorecam"].info  # exact: all channels
    assert results["scorecam"].info["channels_used"] == results["scorecam"].info["channels_total"]
    assert results["integrated_gradients"].info["baseline"] == "zero"
    assert (results["occlusion"].info["patch"], results["occlusion"].info["stride"]) == (32, 32)
    q = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert q["sc"] == "exact" and q["ig_base"] == "zero" and q["occ_patch"] == "32"
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[0] == "Report (HTML)"


@pytest.mark.slow
def test_upload_view_says_the_link_cannot_carry_it(clear_caches):
    at = open_with({"image": "upload"})
    assert not at.exception
    assert any("a link cannot carry uploads" in c.value for c in at.caption)
