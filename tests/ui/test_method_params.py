"""The CAM page's parameter controls are drawn from each method's parameter dataclass: every
registered method's fields get a widget, defaults round-trip, a changed widget reaches the typed
parameters, and a refused value is one error line with the defaults kept."""
from __future__ import annotations

from typing import Optional

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz_core.attribution import METHODS
from cnnviz_core.attribution.registry import IntegratedGradientsParams, ScoreCAMParams
from cnnviz_ui.method_params import field_kinds, with_shared

WITH_PARAMS = [k for k, m in METHODS.items() if field_kinds(m.params_type)]


def test_field_kinds_follow_the_type_hints():
    kinds = {f.name: f for f in field_kinds(ScoreCAMParams)}
    assert set(kinds) == {"batch_size", "channels"}  # the shared CAM options are set once for all maps
    assert kinds["batch_size"].kind == "int" and not kinds["batch_size"].optional
    assert kinds["channels"].kind == "int" and kinds["channels"].optional and kinds["channels"].default is None
    baseline = {f.name: f for f in field_kinds(IntegratedGradientsParams)}["baseline"]
    assert baseline.kind == "choice" and baseline.choices == ("black", "zero")


def test_with_shared_sets_only_fields_a_method_has():
    assert with_shared(ScoreCAMParams(), aug_smooth=True).aug_smooth is True
    assert with_shared(IntegratedGradientsParams(), aug_smooth=True) == IntegratedGradientsParams()


def _script(key: str) -> str:
    return (f"from cnnviz_core.attribution import METHODS\nfrom cnnviz_ui.method_params import param_controls\n"
            f"import streamlit as st\np = param_controls(METHODS[{key!r}], 'k')\nst.session_state['out'] = p\n")


@pytest.mark.parametrize("key", WITH_PARAMS)
def test_every_method_with_parameters_gets_controls_and_its_defaults(key):
    at = AppTest.from_string(_script(key), default_timeout=30).run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert at.session_state["out"] == METHODS[key].params_type()
    drawn = len(at.number_input) + len(at.toggle) + len(at.selectbox) + len(at.text_input)
    assert drawn == len(field_kinds(METHODS[key].params_type))


def test_a_changed_value_reaches_the_parameters_and_a_refused_one_keeps_the_defaults():
    at = AppTest.from_string(_script("scorecam"), default_timeout=30).run()
    at.number_input(key="k_channels").set_value(24).run()
    assert at.session_state["out"] == ScoreCAMParams(channels=24)
    at.number_input(key="k_batch_size").set_value(0).run()
    assert len(at.error) == 1 and "batch_size" in at.error[0].value and "\n" not in at.error[0].value
    assert at.session_state["out"] == ScoreCAMParams()
