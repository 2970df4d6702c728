"""The CAM page offers every registered method grouped by family with its cost, draws each method's
own parameters from its dataclass, applies the CAM smoothing options to every CAM map, and puts the
registered metrics beside each map (table, CSV, report)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from cnnviz_core.attribution import FAMILIES, METHODS

pytestmark = pytest.mark.slow  # each test starts the app and runs models

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


@pytest.fixture()
def downloads(monkeypatch):
    recorded: dict = {}
    original = DeltaGenerator.download_button

    def record(self, label, data, file_name=None, *args, **kwargs):
        recorded[file_name] = data
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    return recorded


def data_of(downloads: dict, name: str):
    assert name in downloads, sorted(downloads)
    data = downloads[name]
    data = data() if callable(data) else data
    return data.encode() if isinstance(data, str) else data


def open_cam(query: dict) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page("pages/cam.py")
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_the_picker_lists_every_method_grouped_by_family_with_its_cost():
    at = open_cam({"methods": "gradcam"})
    assert_clean(at)
    picker = at.multiselect(key="cam_methods")
    assert sorted(picker.options) == sorted(m.display_name for m in METHODS.values()) or len(picker.options) == len(METHODS)
    labels = list(picker.options)
    tags = [label.split(" · ")[0] for label in labels]
    order = {"CAM": 0, "Gradient": 1, "Perturbation": 2, "Regions": 3}
    assert [order[t] for t in tags] == sorted(order[t] for t in tags) and len(set(tags)) == len(FAMILIES)
    for m in METHODS.values():
        label = next(lbl for lbl in labels if f" · {m.display_name} (" in lbl)
        assert f"({m.cost})" in label and label.endswith("⏱") == m.long_running


def test_own_parameters_and_smoothing_reach_the_maps():
    at = open_cam({"methods": "gradcam,kpcacam"})
    assert_clean(at)
    assert at.session_state["cam_methods"] == ["gradcam", "kpcacam"]
    drawn = {w.key for kind in (at.selectbox, at.text_input, at.number_input, at.toggle) for w in kind}
    assert {"cam_p_kpcacam_kpca_kernel", "cam_p_kpcacam_kpca_gamma"} <= drawn, drawn
    widget = next(w for kind in (at.selectbox, at.text_input) for w in kind if w.key == "cam_p_kpcacam_kpca_kernel")
    widget.set_value("rbf").run()
    assert_clean(at)

    def sources() -> list[str]:
        return [d["source"] for d in json.loads(at.get("plotly_chart")[0].proto.spec)["data"] if d["type"] == "image"]

    before = sources()
    at.toggle(key="cam_eigen_smooth").set_value(True).run()
    assert_clean(at)
    after = sources()
    assert after[0] != before[0]  # Grad-CAM's map is now its principal component
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [a["text"].split("<br>")[0] for a in spec["layout"]["annotations"]] == ["Grad-CAM", "KPCA-CAM"]


def test_metrics_beside_each_map_with_table_csv_and_report(downloads):
    at = open_cam({"methods": "gradcam,saliency"})
    assert_clean(at)
    at.multiselect(key="cam_metrics").set_value(["average_drop", "increase_in_confidence"]).run()
    assert_clean(at)
    at.button(key="cam_metrics_job_run").click().run()
    assert_clean(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    from cnnviz_core.metrics.registry import METRICS
    names = [METRICS[k].display_name for k in ("average_drop", "increase_in_confidence")]
    assert all(all(n in t for n in names) for t in titles), titles
    rows = list(csv.DictReader(io.StringIO(data_of(downloads, "cnnviz-cam-metrics.csv").decode())))
    assert [r["method"] for r in rows] == ["Grad-CAM", "Saliency (vanilla gradient)"]
    drop = [float(v) for r in rows for k, v in r.items() if k.startswith(names[0])]
    assert len(drop) == 2 and all(np.isfinite(drop))
    report = data_of(downloads, "cnnviz-cam-report.html").decode()
    assert report.count(names[0]) >= 2


def test_concepts_view_shows_every_concept_with_its_top_classes(downloads):
    at = open_cam({"methods": "gradcam"})
    assert_clean(at)
    at.segmented_control(key="cam_view").set_value("Concepts (DFF)").run()
    assert_clean(at)
    at.slider(key="cam_dff_k").set_value(3).run()
    assert_clean(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0] == "All concepts" and len(titles) == 4 and all("Concept" in t for t in titles[1:])
    rows = list(csv.DictReader(io.StringIO(data_of(downloads, "cnnviz-dff-concepts.csv").decode())))
    assert [r["concept"] for r in rows] == ["1", "2", "3"] and all(r["top classes"] for r in rows)


def test_the_pointing_leaderboard_ranks_every_method_that_applies(downloads):
    """Every fast method on our scenes: each is ranked or listed as not applying. (The *Every method*
    toggle adds the slow ones to the same list; run here they would take many minutes.)"""
    fast = [k for k, m in METHODS.items() if not m.long_running]
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=600).run()
    at.switch_page("pages/applications.py").run()
    assert_clean(at)
    assert f"Every method ({len(METHODS)}" in at.toggle(key="app_pg_every").label
    at.multiselect(key="app_pg_methods").set_value(fast)
    at.slider(key="app_pg_count").set_value(5).run()
    at.button(key="app_pg_run").click().run()
    assert_clean(at)
    rows = list(csv.DictReader(io.StringIO(data_of(downloads, "cnnviz-pointing-leaderboard.csv").decode())))
    ranked = {r["method"] for r in rows}
    captions = " ".join(c.value for c in at.caption)
    left_out = captions.split("Not ranked (they do not apply to this model): ")[1] if "Not ranked" in captions else ""
    for k in fast:
        assert METHODS[k].display_name in ranked or METHODS[k].display_name in left_out, k
    assert len(ranked) >= len(fast) - 4 and all(0.0 <= float(r["pointing"]) <= 1.0 for r in rows)
