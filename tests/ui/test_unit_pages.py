"""AppTest of the unit views: the Backprop page explains a channel or a neuron (with its receptive
field and patch), and the Filters page's "What each layer learned" grid."""
from __future__ import annotations


import pytest
from test_pages import assert_clean, specs, start

pytestmark = pytest.mark.slow  # each test starts the app and runs models


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


def _chart_titles(at) -> list[str]:
    out = []
    for s in specs(at):
        title = s.get("layout", {}).get("title", {})
        out.append(title.get("text", "") if isinstance(title, dict) else str(title))
        out += [a["text"] for a in s.get("layout", {}).get("annotations", [])]
    return out


def test_backprop_explains_a_neuron_with_its_receptive_field():
    at = start("backprop")
    at.radio(key="bp_kind").set_value("Neuron").run()
    assert_clean(at)
    at.selectbox(key="bp_unit_layer").select("stage2.conv1").run()
    at.number_input(key="bp_unit_channel").set_value(3).run()
    assert_clean(at)
    assert any("receptive field" in c.value for c in at.caption)
    rects = [sh for s in specs(at) for sh in s.get("layout", {}).get("shapes", []) if sh.get("type") == "rect"]
    assert len({sh.get("xref", "x") for sh in rects}) >= 4  # the input and the three projections carry the box
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1  # the patch crops
    at.radio(key="bp_unit_where").set_value("Chosen").run()
    at.number_input(key="bp_unit_y").set_value(5).run()
    assert_clean(at)
    assert any("at cell (5," in c.value for c in at.caption)
    assert any(s["data"][0]["type"] == "heatmap" for s in specs(at))  # the clickable feature map


def test_backprop_explains_a_channel():
    at = start("backprop")
    at.radio(key="bp_kind").set_value("Channel").run()
    at.radio(key="bp_unit_reduce").set_value("max").run()
    assert_clean(at)
    assert any("channel 0" in c.value for c in at.caption)


def test_what_each_layer_learned_grid():
    at = start("filters")
    at.select_slider(key="filters_learn_count").set_value(16)
    at.slider(key="filters_learn_channels").set_value(2)
    at.slider(key="filters_learn_k").set_value(2).run()
    at.button(key="filters_learn_run").click().run()
    assert_clean(at)
    grid = [s for s in specs(at) if any("projection" in a["text"] for a in s.get("layout", {}).get("annotations", []))]
    assert grid and len(grid[0]["data"]) == 8  # 2 channels x 2 activations x (projection, patch)
