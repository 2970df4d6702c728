"""The dashboard's pointing-game leaderboard and the audit score the same map the same way.

Bug (issue 13): the dashboard used the float ``15 * side / 224`` (8.57 px at 128 px) while the audit
rounds it to whole pixels (9 px), so a maximum 8.6 px from the object was a hit in the audit and a
miss on the Applications page.
"""
from __future__ import annotations

import inspect

import numpy as np

from cnnviz_core.audit import faithfulness
from cnnviz_core.metrics import pointing_game


def _border_case() -> tuple[np.ndarray, np.ndarray]:
    """A 128 px mask and a map whose maximum is sqrt(74) = 8.60 px from the mask."""
    mask = np.zeros((128, 128), bool)
    mask[40:60, 40:60] = True
    saliency = np.zeros((128, 128), np.float32)
    saliency[59 + 7, 59 + 5] = 1.0  # 7 rows and 5 columns past the mask's corner pixel (59, 59)
    return saliency, mask


def test_dashboard_uses_the_audits_tolerance():
    from cnnviz_ui import metrics_view

    assert metrics_view.pointing_tolerance is faithfulness.pointing_tolerance
    source = inspect.getsource(metrics_view.pointing_game_section)
    assert "pointing_tolerance(handle.input_size)" in source and "/ 224" not in source


def test_border_case_scores_the_same_in_both():
    saliency, mask = _border_case()
    tolerance = faithfulness.pointing_tolerance(128)
    assert tolerance == 9
    assert pointing_game(saliency, mask, tolerance)  # audit and dashboard: a hit
    assert not pointing_game(saliency, mask, 15.0 * 128 / 224)  # what the dashboard used to score: a miss
