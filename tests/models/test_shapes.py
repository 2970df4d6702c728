"""ShapesCNN variants: shapes of the CAM layer, CAM exactness at it, and the layer choices offered."""
from __future__ import annotations

import pytest
import torch

from cnnviz_core import load_model
from cnnviz_core.models.shapes import ShapesCNN


@pytest.mark.parametrize("kwargs, layer, side", [
    ({"cam_stride": 8}, "stage4", 16),
    ({"cam_stride": 4}, "stage4", 32),
    ({"cam_stride": 4, "gated_fusion": True}, "fusion", 32),
])
def test_logits_are_the_linear_layer_on_the_pooled_cam_layer(kwargs, layer, side):
    torch.manual_seed(0)
    model = ShapesCNN(**kwargs).eval()
    assert model.cam_layer == layer
    x = torch.randn(2, 3, 128, 128)
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    a = seen["a"]
    assert a.shape == (2, 128, side, side) and (a >= 0).all()
    assert torch.allclose(logits, model.fc(a.mean((2, 3))), atol=1e-5)  # CAM is exact here


def test_gated_fusion_needs_stride_4():
    with pytest.raises(ValueError, match="cam_stride=4"):
        ShapesCNN(cam_stride=8, gated_fusion=True)


def test_cam_layers_offer_the_default_layer_last_when_it_is_not_a_conv():
    handle = load_model("shapes-cnn", weights=None)
    assert handle.default_layer == "fusion"
    assert handle.cam_layers[-1] == "fusion" and handle.cam_layers[:-1] == handle.conv_layers
    assert "fusion.local.conv" in handle.conv_layers
