"""Layer tables computed by tracing: totals equal torchvision's published metadata, receptive
fields equal the values from the literature, depth counts weight layers on the longest path."""
from __future__ import annotations

import pytest
import torch

from cnnviz_core.featureviz import architecture_comparison, layer_table, summarize, trace_layers
from cnnviz_core.hooks import hook_count
from cnnviz_core.models import get_architecture
from cnnviz_core.models.zfnet import PAPER_TOP1_ERROR, PAPER_TOP5_ERROR


def meta_rows(name: str):
    arch = get_architecture(name)
    return trace_layers(arch.build_empty().eval(), arch.preprocessing.input_size, "meta")


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet18", "googlenet", "convnext_tiny"])
def test_totals_match_torchvision_metadata(name):
    totals = summarize(meta_rows(name))
    facts = get_architecture(name).facts
    assert totals["params"] == facts["params"]
    assert totals["macs"] / 1e9 == pytest.approx(facts["gflops"], abs=2e-3)


@pytest.mark.parametrize("name, path, rf, jump", [
    ("alexnet", "features.12", 195, 32),   # Araujo et al. 2019 (Distill), AlexNet pool5
    ("vgg16", "features.30", 212, 32),     # VGG-16 pool5
    ("resnet18", "layer4.1.relu", 435, 32),  # needs the shortcut branch handled separately
])
def test_receptive_fields(name, path, rf, jump):
    last = [r for r in meta_rows(name) if r["path"] == path][-1]
    assert (last["rf"], last["jump"]) == (rf, jump)


def test_depth_and_conv1():
    depths = {n: summarize(meta_rows(n))["depth"] for n in ("alexnet", "vgg19", "resnet18", "resnet50")}
    assert depths == {"alexnet": 8, "vgg19": 19, "resnet18": 18, "resnet50": 50}


def test_layer_table_of_a_loaded_model(random_shapes):
    rows = layer_table(random_shapes)
    assert rows[0]["path"] == "stage1.conv1" and rows[0]["output_shape"] == (24, 128, 128)
    assert rows[0]["macs"] == 128 * 128 * 24 * 3 * 9 and rows[0]["rf"] == 3
    stage4 = [r for r in rows if r["path"] == "stage4.relu2"][0]
    # stride-4 CAM layer: stage3 does not pool, stage4 convs are dilated by 2 and 3 (receptive field 66 px)
    assert stage4["output_shape"] == (128, 32, 32) and stage4["jump"] == 4 and stage4["rf"] == 66
    assert rows[-1]["path"] == "fc" and rows[-1]["rf"] is None
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in random_shapes.model.parameters())
    assert hook_count(random_shapes.model) == 0


def test_architecture_comparison_rows():
    rows = {r["name"]: r for r in architecture_comparison()}
    assert list(rows) == ["alexnet", "zfnet", "vgg16", "vgg19", "resnet18", "resnet50"]
    assert [(rows[n]["conv1_kernel"], rows[n]["conv1_stride"]) for n in rows] == [
        (11, 4), (7, 2), (3, 1), (3, 1), (7, 2), (7, 2)]
    assert rows["zfnet"]["acc1"] == pytest.approx(100 - PAPER_TOP1_ERROR)
    assert rows["zfnet"]["acc5"] == pytest.approx(100 - PAPER_TOP5_ERROR)
    assert rows["vgg16"]["acc1"] == get_architecture("vgg16").facts["acc1"]
    assert rows["zfnet"]["gflops"] > rows["alexnet"]["gflops"]  # stride 2 conv1 costs more
    for r in rows.values():
        assert r["depth"] > 0 and r["params"] > 1e6 and r["year"] and r["contribution"].endswith(".")


def test_real_trace_of_an_unregistered_model_matches_the_meta_trace(random_shapes):
    from dataclasses import replace

    from cnnviz_core.models import ModelHandle

    model = get_architecture("shapes-cnn").build()
    user = ModelHandle(replace(random_shapes.spec, architecture=""), model, random_shapes.device, "file x")
    real = layer_table(user)  # no catalog architecture (a program file): traced for real, under the lock
    assert real == layer_table(random_shapes)
    assert hook_count(model) == 0
