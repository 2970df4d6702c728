"""Tests of cnnviz_core.train: the committed shapes models and the training entry point."""
from __future__ import annotations

import json
import math

import pytest
import torch

from cnnviz_core.models.shapes import ShapesCNN
from cnnviz_core.scenes import CLASSES
from cnnviz_core.train import DEFAULT_OUT, HELDOUT_SEED, evaluate, load_trained, main

NAMES = ("shapes-cnn", "shapes-cnn-biased")
FRESH_SEED = 20_000  # neither a training seed (< 10_000) nor the seed of the JSON figures


@pytest.mark.parametrize("name", NAMES)
def test_committed_weights_load_strictly_and_metadata_is_valid(name):
    pt, meta_path = DEFAULT_OUT / f"{name}.pt", DEFAULT_OUT / f"{name}.json"
    assert pt.stat().st_size <= 5 * 1024 * 1024
    meta = json.loads(meta_path.read_text())
    assert meta["name"] == name and meta["arch"] == "ShapesCNN" and meta["display_name"]
    assert meta["classes"] == list(CLASSES) and meta["input_size"] == 128
    assert meta["arch_kwargs"]["num_classes"] == len(CLASSES)
    assert meta["head"] in ("multilabel", "softmax")
    assert len(meta["mean"]) == 3 and all(0 < s < 1 for s in meta["std"])
    assert {"seed", "steps", "batch_size", "seconds", "torch"} <= set(meta["train"])
    assert meta["train"]["seconds"] <= 15 * 60 and meta["train"]["seed"] < HELDOUT_SEED
    figures = meta["heldout"]
    assert figures["seed"] >= HELDOUT_SEED
    for key in ("single_top1", "two_object_top2", "shuffled_tag_top1", "match_tag_top1"):
        assert 0 <= figures[key] <= 1
    state = torch.load(pt, weights_only=True)
    model = ShapesCNN(**meta["arch_kwargs"])
    model.load_state_dict(state, strict=True)
    assert dict(model.named_modules())["stage4"] is model.stage4
    assert meta["default_layer"] == model.cam_layer


def test_shapes_cnn_figures_in_metadata_meet_targets():
    figures = json.loads((DEFAULT_OUT / "shapes-cnn.json").read_text())["heldout"]
    assert figures["n_single"] >= 200 and figures["n_two"] >= 200
    assert figures["single_top1"] >= 0.97 and figures["two_object_top2"] >= 0.90
    assert figures["shuffled_tag_top1"] >= figures["single_top1"] - 0.05
    biased = json.loads((DEFAULT_OUT / "shapes-cnn-biased.json").read_text())["heldout"]
    assert biased["match_tag_top1"] - biased["shuffled_tag_top1"] >= 0.40


@pytest.mark.slow
def test_shapes_cnn_is_accurate_on_fresh_scenes():
    model, meta = load_trained("shapes-cnn")
    r = evaluate(model, meta["mean"], meta["std"], seed=FRESH_SEED, n_single=60, n_two=40)
    assert r["single_top1"] >= 0.95
    assert r["two_object_top2"] >= 0.85
    assert r["shuffled_tag_top1"] >= r["single_top1"] - 0.07  # the tag does not matter to it


@pytest.mark.slow
def test_biased_model_relies_on_the_tag():
    model, meta = load_trained("shapes-cnn-biased")
    r = evaluate(model, meta["mean"], meta["std"], seed=FRESH_SEED, n_single=60, n_two=0)
    assert r["match_tag_top1"] >= 0.9
    assert r["match_tag_top1"] - r["shuffled_tag_top1"] >= 0.40


@pytest.mark.slow
def test_training_entry_point_writes_a_loadable_model(tmp_path, capsys):
    code = main(["shapes-cnn", "--steps", "3", "--batch-size", "8", "--heldout", "4",
                 "--out", str(tmp_path), "--threads", "2"])
    assert code == 0
    assert "step 3/3" in capsys.readouterr().out
    meta = json.loads((tmp_path / "shapes-cnn.json").read_text())
    assert meta["train"]["steps"] == 3 and math.isfinite(meta["train"]["final_loss"])
    assert meta["heldout"]["n_single"] == 4
    model, _ = load_trained("shapes-cnn", tmp_path)
    assert model(torch.zeros(1, 3, 128, 128)).shape == (1, len(CLASSES))


def test_training_rejects_evaluation_seeds(capsys):
    assert main(["shapes-cnn", "--seed", str(HELDOUT_SEED), "--steps", "1"]) != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
