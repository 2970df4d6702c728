"""Top activations over an image set: equal to a brute-force search, cached, cancellable."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_core import load_model
from cnnviz_core.attribution import NeuronTarget, explain_detailed
from cnnviz_core.attribution.receptive_field import neuron_receptive_field
from cnnviz_core.attribution.topk import ImageSet, channel_maxima, projection_image, top_activations
from cnnviz_core.cache import LRUCache
from cnnviz_core.errors import Cancelled, ParameterError
from cnnviz_core.hooks import capture, hook_count
from cnnviz_core.progress import CancelToken


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes-cnn", weights=None)


@pytest.fixture(scope="module")
def scenes():
    return ImageSet.from_scenes(24, 777, objects=2)


def _brute_force(handle, images, layer, channel, at=None):
    """One full forward per image, the layer captured: (value, y, x) per image."""
    out = []
    for i in range(len(images)):
        x = handle.preprocess(images[i])
        with torch.no_grad(), capture(handle.model, [layer]) as store:
            handle.model(x)
        fmap = store[layer][0, channel]
        if at is None:
            flat = int(fmap.reshape(-1).argmax())
            y, xx = divmod(flat, fmap.shape[1])
        else:
            y, xx = at
        out.append((float(fmap[y, xx]), y, xx))
    return out


@pytest.mark.parametrize("layer,channel,at", [("stage2", 7, None), ("stage3", 40, None), ("fusion", 3, None),
                                              ("stage3", 12, (10, 20))])
def test_top_k_equals_a_brute_force_search(shapes, scenes, layer, channel, at):
    k = 6
    top = top_activations(shapes, scenes, layer, channel, k=k, at=at, cache=LRUCache(4), batch_size=10)
    brute = _brute_force(shapes, scenes, layer, channel, at)
    order = sorted(range(len(brute)), key=lambda i: -brute[i][0])[:k]
    assert [t.index for t in top] == order
    assert len({t.index for t in top}) == len(top) == k  # at most one entry per image
    values = [t.activation for t in top]
    assert values == sorted(values, reverse=True)
    for t, i in zip(top, order):
        v, y, x = brute[i]
        assert (t.y, t.x) == (y, x) and t.activation == pytest.approx(v, rel=1e-5, abs=1e-6)
        assert t.image == scenes.names[i]


def test_each_top_activation_has_its_patch_field_and_projection(shapes, scenes):
    top = top_activations(shapes, scenes, "stage3", 40, k=3, cache=LRUCache(4))
    with torch.no_grad(), capture(shapes.model, ["stage3"]) as store:
        shapes.model(shapes.preprocess(scenes[0]))
    fmap_shape = tuple(store["stage3"].shape[1:])
    for t in top:
        x = shapes.preprocess(scenes[t.index])
        box = neuron_receptive_field(shapes, "stage3", (128, 128), fmap_shape, 40, t.y, t.x)
        assert t.receptive_field == box
        top_, left, bottom, right = box
        np.testing.assert_array_equal(t.patch, shapes.to_display(x)[top_:bottom, left:right])
        alone = explain_detailed(shapes, x, "deconvnet", target=NeuronTarget("stage3", 40, t.y, t.x),
                                 cache=None)["deconvnet"]
        np.testing.assert_allclose(t.projection, alone.raw[:, top_:bottom, left:right], rtol=1e-4, atol=1e-6)
        assert np.abs(alone.raw).sum() == pytest.approx(np.abs(t.projection).sum(), rel=1e-4)  # zero outside
        img = projection_image(t.projection)
        assert img.shape == (*t.patch.shape[:2], 3) and img.dtype == np.uint8
    assert hook_count(shapes.model) == 0


def test_channel_maxima_are_cached_per_model_layer_and_set(shapes, scenes):
    cache = LRUCache(4)
    first = channel_maxima(shapes, scenes, "stage2", cache=cache)
    assert first.values.shape == (24, 48) and first.positions.shape == (24, 48, 2)
    calls = []
    h = shapes.model.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0].dtype))
    try:
        assert channel_maxima(shapes, scenes, "stage2", cache=cache) is first
        top_activations(shapes, scenes, "stage2", 5, k=2, cache=cache)  # browsing another channel
    finally:
        h.remove()
    # only the batched projection of the 2 top images (plus the float64 structural pass that finds
    # their receptive fields, cached per unit)
    assert calls.count(torch.float32) == 1 and len(calls) <= 2
    other = ImageSet.from_images([scenes[i] for i in range(5)])
    assert channel_maxima(shapes, other, "stage2", cache=cache) is not first
    assert first.top_channels(3) == [int(c) for c in np.argsort(-first.values.mean(0), kind="stable")[:3]]


def test_progress_and_cancel(shapes, scenes):
    seen = []
    channel_maxima(shapes, scenes, "stage3", batch_size=8, cache=None, progress=seen.append)
    assert [p.step for p in seen] == [8, 16, 24] and seen[-1].total == 24
    token = CancelToken()
    with pytest.raises(Cancelled):
        channel_maxima(shapes, scenes, "stage3", batch_size=8, cache=None, cancel=token,
                       progress=lambda p: token.cancel())
    assert hook_count(shapes.model) == 0


def test_bad_requests(shapes, scenes):
    with pytest.raises(ParameterError, match="out of range"):
        top_activations(shapes, scenes, "stage2", 48, cache=None)
    with pytest.raises(ParameterError, match="no layer"):
        top_activations(shapes, scenes, "stage9", 0, cache=None)
    with pytest.raises(ParameterError, match="unknown projection"):
        top_activations(shapes, scenes, "stage2", 0, method="gradcam", cache=None)
    with pytest.raises(ParameterError, match="outside"):
        top_activations(shapes, scenes, "stage2", 0, at=(40, 0), cache=None)
    with pytest.raises(ParameterError, match="empty"):
        ImageSet.from_images([])


def test_folder_image_set(tmp_path, scenes):
    for i in range(3):
        scenes[i].save(tmp_path / f"b{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "b0.mask.png")
    folder = ImageSet.from_folder(tmp_path)
    assert folder.names == ("b0.png", "b1.png", "b2.png")
    assert np.array_equal(np.asarray(folder[1]), np.asarray(scenes[1]))
    assert ImageSet.from_folder(tmp_path).digest == folder.digest


def test_layer_figure(shapes):
    from cnnviz_core.attribution.layerfig import layer_figure

    fig = layer_figure(shapes, ImageSet.from_scenes(6, 5), ["stage1.conv1", "stage2.conv1"], channels=2, k=3)
    assert fig.mode == "RGB" and fig.width > 6 * 64 and fig.height > 2 * 2 * 64
