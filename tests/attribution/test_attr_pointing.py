"""Grad-CAM localizes each object of held-out two-object scenes with the trained shapes-cnn.

The issue's measurement: 200 two-object scenes of seed 20000 (400 targets), Grad-CAM at the default
layer ``fusion`` (32x32 for 128 px). Measured with the shipped weights:

=====  ==================  =============  ============================
seed   strict (in mask)    within 2 px    own mask > other's (energy)
=====  ==================  =============  ============================
20000  91.0 %              98.75 %        99.25 %
20001  89.25 %             99.0 %         99.75 %
20002  92.5 %              99.75 %        100 %
=====  ==================  =============  ============================

Goals: >= 90 % strict and >= 90 % for the energy comparison on the issue's 200 scenes. Seeds 20001
and 20002 are extra evidence: the strict figure is asserted on all 600 scenes together (90.9 %),
not on each (20001 is below 90 %). The architecture was chosen on seed 15000, not on these. The
misses are maxima on a boundary cell, 1-2 px outside the edge (triangles and stars most often).
"""
from __future__ import annotations

import pytest

from cnnviz_core import load_model
from cnnviz_core.metrics import pointing_game_table
from cnnviz_core.scenes import generate_scene

HALF_LAYER_CELL_PX = 2.0
SEEDS = (20_000, 20_001, 20_002)  # training uses seeds < 10_000


@pytest.fixture(scope="module")
def rows():
    handle = load_model("shapes-cnn")
    return {seed: pointing_game_table(handle, ["gradcam"], [generate_scene(seed, i, objects=2) for i in range(200)],
                                      tolerance=(0.0, HALF_LAYER_CELL_PX))[0] for seed in SEEDS}


@pytest.mark.slow
def test_gradcam_pointing_game_on_the_issues_200_scenes(rows):
    row = rows[SEEDS[0]]
    assert row.n == 400
    assert row.pointing >= 0.9, f"strict pointing game {row.pointing:.1%}"
    assert row.energy_wins >= 0.9, f"own mask holds more energy than the other for {row.energy_wins:.1%}"


@pytest.mark.slow
def test_gradcam_pointing_game_on_600_scenes(rows):
    pooled = sum(r.pointing * r.n for r in rows.values()) / sum(r.n for r in rows.values())
    assert pooled >= 0.9, f"strict pointing game over {len(SEEDS) * 200} scenes: {pooled:.1%}"
    for seed, row in rows.items():
        assert row.energy_wins >= 0.9, f"seed {seed}: own mask holds more energy for {row.energy_wins:.1%}"
        within = row.pointing_by_tolerance[HALF_LAYER_CELL_PX]
        assert within >= 0.95, f"seed {seed}: Grad-CAM maximum within 2 px of the object for {within:.1%}"
