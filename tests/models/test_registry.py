"""The registry: required models present, metadata read offline from torchvision, layers valid."""
from __future__ import annotations

import pytest
import torch

from cnnviz_core import entries
from cnnviz_core.models import ImageNetCache, conv_layer_paths, get_architecture, get_entry

REQUIRED = ["shapes-cnn", "shapes-cnn-biased", "zfnet", "alexnet", "vgg16", "vgg19", "resnet18", "resnet50",
            "googlenet", "squeezenet1_1", "mobilenet_v3_large", "densenet121", "efficientnet_b0", "convnext_tiny"]


def test_required_models_registered_ours_first():
    names = [e.name for e in entries()]
    assert set(REQUIRED) <= set(names)
    assert names[0] == "shapes-cnn"


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.name)
def test_spec_is_consistent(entry):
    spec = entry.architecture
    model = spec.build_empty().eval()
    model.get_submodule(spec.default_layer)  # the default CAM layer exists
    assert conv_layer_paths(model), "every registered model has conv layers"
    size = spec.preprocessing.input_size
    assert len(spec.class_names) == model(torch.empty(1, 3, size, size, device="meta")).shape[1]
    assert entry.readiness().status in ("ready", "needs download", "untrained", "unavailable")
    if isinstance(entry.default_source, ImageNetCache):
        facts = spec.facts
        assert facts["params"] == sum(p.numel() for p in model.parameters()) or spec.name == "googlenet"
        assert 40 < facts["acc1"] < 90 and facts["acc1"] < facts["acc5"] < 100
        assert facts["gflops"] > 0 and facts["file_mb"] > 0
        assert spec.preprocessing.resize_size >= spec.preprocessing.input_size == 224


def test_zfnet_follows_the_paper():
    model = get_architecture("zfnet").build()
    conv1 = model.features[0]
    assert conv1.kernel_size == (7, 7) and conv1.stride == (2, 2) and conv1.out_channels == 96
    shapes = []
    x = torch.zeros(1, 3, 224, 224)
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            shapes.append(x.shape[-1])
    assert shapes == [110, 55, 26, 13, 13, 13, 13, 6]
    assert get_architecture("zfnet").facts["acc1"] == pytest.approx(61.6)


def test_preprocess_matches_torchvision_transforms():
    from PIL import Image
    import numpy as np

    from cnnviz_core import load_model

    handle = load_model("resnet18", weights=None)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    ours = handle.preprocess(img)
    theirs = get_entry("resnet18").imagenet.weights.transforms()(img).unsqueeze(0)
    assert ours.shape == (1, 3, 224, 224)
    assert torch.allclose(ours, theirs, atol=2e-2)  # PIL vs tensor resize differ by rounding only
    assert np.abs(handle.to_display(ours).astype(int) - np.asarray(handle.crop(img)).astype(int)).max() <= 1
