"""``python -m cnnviz_core methods`` lists every registered method and metric, and ``explain`` takes
per-method parameters (``--param METHOD.KEY=VALUE``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cnnviz_core.attribution import FAMILIES, METHODS
from cnnviz_core.cli import main
from cnnviz_core.cli.explain_cmd import parse_params


def test_methods_lists_every_registered_method_and_metric(capsys):
    assert main(["methods", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in listed["methods"]] == list(METHODS)
    assert all(r["paper"] and r["cost"] and r["family"] in FAMILIES for r in listed["methods"])
    from cnnviz_core.metrics.registry import METRICS
    assert [m["key"] for m in listed["metrics"]] == list(METRICS)


def test_markdown_table_has_one_row_per_method_grouped_by_family(capsys):
    assert main(["methods", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "`" in line]
    keys = [line.split("`")[1] for line in rows]
    assert sorted(keys) == sorted(METHODS)
    families = [line.split("|")[3].strip() for line in rows]
    assert families == sorted(families, key=list(FAMILIES).index)


def test_parse_params_flat_and_per_method():
    flat, own = parse_params(["steps=32", "noise=0.1", "baseline=black", "scorecam.channels=none",
                              "gradcam.aug_smooth=true", "finercam.comparison_categories=1,2"])
    assert flat == {"steps": 32, "noise": 0.1, "baseline": "black"}
    assert own == {"scorecam": {"channels": None}, "gradcam": {"aug_smooth": True},
                   "finercam": {"comparison_categories": (1, 2)}}


def test_explain_applies_a_per_method_parameter_to_that_method_only(tmp_path, shapes_scene_image, capsys):
    image = tmp_path / "scene.png"
    shapes_scene_image.save(image)
    out = tmp_path / "out"
    code = main(["explain", str(image), "--model", "shapes-cnn", "--weights", "none", "--methods",
                 "scorecam,occlusion", "--param", "scorecam.channels=8", "--param", "batch_size=4",
                 "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["methods"]["scorecam"]["info"]["channels_used"] == 8
    assert summary["method_params"] == {"scorecam": {"channels": 8}}
    assert np.load(out / "scorecam.npy").shape == (128, 128)


def test_a_parameter_of_an_unknown_method_is_one_line(tmp_path, shapes_scene_image, capsys):
    image = tmp_path / "scene.png"
    shapes_scene_image.save(image)
    code = main(["explain", str(image), "--model", "shapes-cnn", "--weights", "none", "--methods", "gradcam",
                 "--param", "nosuch.k=1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and "nosuch" in err
