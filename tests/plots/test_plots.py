"""cnnviz_core.plots: pure numpy -> Plotly figure builders."""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from cnnviz_core import plots


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)


def valid(fig: go.Figure) -> dict:
    """The figure's dict after plotly's full validation (raises on any invalid property)."""
    return go.Figure(fig.to_dict()).to_dict()


def test_overlay_blends_between_image_and_colormap(image):
    heat = np.linspace(0, 1, 32 * 40).reshape(32, 40)
    assert np.array_equal(plots.overlay(image, heat, opacity=0.0), image)
    colored = plots.apply_colormap(heat, "Greys_r")
    assert np.array_equal(plots.overlay(image, heat, "Greys_r", opacity=1.0), colored)
    # Greys_r goes from black to white: the minimum is dark, the maximum bright
    assert colored[0, 0].max() < 30 and colored[-1, -1].min() > 225


def test_overlay_resizes_small_maps_to_the_image(image):
    heat = np.zeros((4, 5))
    heat[0, 0] = 1.0
    out = plots.overlay(image, heat, "Greys_r", opacity=1.0)
    assert out.shape == image.shape
    assert out[:8, :8].min() > 225 and out[8:, 8:].max() < 30  # one 8x8 block per map cell


def test_scale_range_shared_and_degenerate():
    assert plots.scale_range([np.array([[1.0, 2.0]]), np.array([[5.0]])]) == (1.0, 5.0)
    assert plots.scale_range([np.full((2, 2), 3.0)]) == (3.0, 4.0)
    assert plots.scale_range([np.array([[np.nan, 2.0, 7.0]])]) == (2.0, 7.0)


def test_overlay_grid_shared_scale_keeps_raw_values_per_map_normalizes(image):
    maps = {"small": np.full((32, 40), 0.1), "big": np.linspace(0, 10, 32 * 40).reshape(32, 40)}
    shared = valid(plots.overlay_grid(image, maps, shared_scale=True, cols=2))
    hovers = [d for d in shared["data"] if d["type"] == "heatmap"]
    assert len(hovers) == 2 and len([d for d in shared["data"] if d["type"] == "image"]) == 2
    assert shared["data"][-1]["marker"]["cmax"] == pytest.approx(10.0)
    alone = valid(plots.overlay_grid(image, maps, shared_scale=False, cols=2, subtitles={"big": "AUC 0.5"}))
    assert alone["data"][-1]["marker"]["cmax"] == 1.0
    assert [a["text"] for a in alone["layout"]["annotations"]] == ["small", "big<br>" + plots.subtitle("AUC 0.5")]


def test_overlay_grid_panels_are_jpeg_over_a_photo_png_alone_in_separate_cells():
    yy, xx = np.mgrid[0:32, 0:40]
    image = np.stack([yy * 8, xx * 6, (yy + xx) * 3], axis=-1).astype(np.uint8)  # smooth, like a photo
    maps = {f"m{i}": np.sin((xx + i) / 6.0) * np.cos(yy / 5.0) for i in range(5)}
    fig = valid(plots.overlay_grid(image, maps, cols=3, hover=False))
    sources = [d["source"] for d in fig["data"] if d["type"] == "image"]
    assert len(sources) == 5 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1]))))
    exact = plots.overlay(image, np.asarray(maps["m0"], np.float64), "Jet", 0.5, *plots.scale_range([maps["m0"]]))
    assert decoded.shape == exact.shape and np.abs(decoded.astype(int) - exact).mean() < 8  # lossy, close
    plain = valid(plots.overlay_grid(None, maps, cols=3, hover=False))
    assert all(d["source"].startswith("data:image/png;base64,") for d in plain["data"] if d["type"] == "image")
    domains = [tuple(fig["layout"][f"xaxis{'' if i == 0 else i + 1}"]["domain"]) for i in range(5)]
    assert len(set(domains[:3])) == 3 and domains[0] == domains[3]  # 3 columns, row-major


def test_image_grid_rejects_empty_input():
    with pytest.raises(ValueError):
        plots.image_grid({})


def test_feature_map_grid_montage_and_labels():
    maps = np.random.default_rng(0).random((10, 6, 6)).astype(np.float32)
    figure = plots.feature_map_grid(maps, [f"c{i}" for i in range(10)], cols=4)
    fig = valid(figure)
    z = np.asarray(figure.data[0].z, dtype=float)
    assert z.shape == (3 * 7 - 1, 4 * 7 - 1)  # 3 rows x 4 cols of 6 px tiles, 1 px gaps
    assert np.isnan(z[6, :]).all()  # the gap row
    assert np.nanmin(z) == 0.0 and np.nanmax(z) == 1.0  # each tile scaled alone
    assert [a["text"] for a in fig["layout"]["annotations"]] == [f"c{i}" for i in range(10)]


def test_gradient_views():
    g = np.zeros((3, 4, 4), np.float32)
    g[1, 2, 3] = -2.0
    g[0, 0, 0] = 1.0
    mag = plots.gradient_magnitude(g)
    assert mag.shape == (4, 4) and mag[2, 3] == 2.0 and mag[0, 0] == 1.0
    rgb = plots.signed_rgb(g)
    assert rgb.shape == (4, 4, 3) and tuple(rgb[1, 1]) == (128, 128, 128)  # zero is mid grey
    assert rgb[2, 3, 1] == 0 and rgb[0, 0, 0] == 191


def test_grid_png_size_and_content(image):
    data = plots.grid_png({"a": image, "b": image, "c": image}, cols=2)
    png = Image.open(io.BytesIO(data))
    assert png.format == "PNG"
    assert png.size == (2 * (40 + 6) + 6, 2 * (32 + 18 + 6) + 6)


def test_charts_are_valid_plotly():
    valid(plots.topk_bar([(0, "cat", 0.7), (1, "dog", 0.2)]))
    valid(plots.loss_curves({"total": [3.0, 2.0, 1.0], "tv": [0.0, 0.1, 0.1]}))
    valid(plots.curve_figure({"deletion": ([0.0, 0.5, 1.0], [1.0, 0.4, 0.1])}, xticks=["a", "b", "c"]))
    valid(plots.bar_chart(["a", "b"], [0.5, 0.25], title="pointing"))
    fig = valid(plots.scatter_figure([{"n": "a", "x": 2012, "y": 60.0, "p": 61}, {"n": "b", "x": 2014, "y": 70.0, "p": 138}],
                                     x="x", y="y", label="n", size="p"))
    assert fig["layout"]["xaxis"]["tickformat"] == "d"
    assert fig["data"][0]["marker"]["size"][1] > fig["data"][0]["marker"]["size"][0]
