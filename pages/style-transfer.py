"""Style transfer (Gatys et al. 2016): the content of one image in the style of another."""
from __future__ import annotations

import os

import numpy as np
import streamlit as st

from cnnviz_core import SAMPLES, CnnvizError, get_entry, load_image, plots
from cnnviz_core.featureviz import STYLE_LAYERS, style_transfer
from cnnviz_core.images import image_digest, to_png_bytes
from cnnviz_ui import chart, download_buttons, error_message, get_engine, page_header, page_selection, run_controls, \
    run_task, show_status, task_state
from cnnviz_ui.sidebar import UPLOAD_TYPES
from cnnviz_ui.state import cached_sample

MODEL = "vgg19"
RANDOM, IMAGENET = "Random weights (mechanics demo)", "ImageNet weights"
CONTENT_LAYERS = ("conv4_2", "conv3_2", "conv5_2")

page_header(
    "Style transfer", ":material/palette:",
    "Gatys, Ecker & Bethge (*Image Style Transfer Using CNNs*, CVPR 2016) optimise an image so that its deep "
    "VGG-19 features match the **content** photo while the correlations between feature channels (Gram "
    "matrices) of several layers match the **style** image.",
)

sel = page_selection()
if sel.user_model:
    st.info("Style transfer needs VGG-19's convolution layers (conv1_1 … conv5_2), so this page always runs on "
            f"VGG-19, not on {sel.model_name}; the other pages use your model.", icon=":material/info:")
entry = get_entry(MODEL)
ready = entry.readiness()
offline = bool(os.environ.get("CNNVIZ_OFFLINE"))
if ready.status == "ready":
    options = [IMAGENET, RANDOM]
elif offline:
    options = [RANDOM]
    st.info(
        f"VGG-19's ImageNet weights ({ready.download_mb:.0f} MB) are not in the cache and this app is offline. "
        f"To get real stylisation, {entry.default_source.where()}, and reload. Until then the page runs with "
        "random weights: the optimisation works and the losses fall, but the picture is not a painting.",
        icon=":material/info:",
    )
else:
    options = [f"{IMAGENET} (download {ready.download_mb:.0f} MB on first run)", RANDOM]
weights_choice = st.radio("Network", options, horizontal=True, key="st_weights")
weights = None if weights_choice == RANDOM else "default"


def pick_image(label: str, key: str, default_sample: str, allow_sidebar: bool):
    sources = (["Sidebar image"] if allow_sidebar else []) + ["Sample", "Upload"]
    source = st.radio(label, sources, horizontal=True, key=f"{key}_source")
    if source == "Sidebar image":
        return sel.image, sel.image_label
    if source == "Sample":
        names = list(SAMPLES)
        name = st.selectbox(f"{label} sample", names, index=names.index(default_sample), key=f"{key}_sample")
        return cached_sample(name), name
    upload = st.file_uploader(f"{label} file", type=UPLOAD_TYPES, key=f"{key}_upload")
    if upload is None:
        st.caption(f"No file yet: using the sample {default_sample!r}.")
        return cached_sample(default_sample), default_sample
    try:
        return load_image(upload.getvalue(), max_side=1024), upload.name
    except CnnvizError as exc:
        st.error(error_message(exc), icon=":material/broken_image:")
        return cached_sample(default_sample), default_sample


left, right = st.columns(2)
with left:
    content, content_label = pick_image("Content", "st_content", "Photo: cat (chelsea)", allow_sidebar=True)
with right:
    style, style_label = pick_image("Style", "st_style", "Photo: coffee", allow_sidebar=False)

with st.expander("Weights, layers and steps", expanded=True):
    w1, w2, w3 = st.columns(3)
    style_exp = w1.slider("Style weight (10^x)", 2, 9, 6, key="st_style_w",
                          help="Relative to content weight 1. Higher: more style, less content.")
    tv_weight = w2.select_slider("Smoothness (TV weight)", [0.0, 1e-4, 1e-3, 1e-2, 1e-1], value=0.0, key="st_tv")
    preserve = w3.toggle("Preserve the content's colours", value=False, key="st_color",
                         help="Transfer luminance only (Gatys et al. 2016, Preserving Color...).")
    l1, l2 = st.columns([2, 1])
    style_layers = l1.multiselect("Style layers", list(STYLE_LAYERS), default=list(STYLE_LAYERS), key="st_layers")
    content_layer = l2.selectbox("Content layer", CONTENT_LAYERS, key="st_content_layer")
    o1, o2, o3, o4 = st.columns(4)
    steps = o1.slider("Steps", 5, 300, 30, step=5, key="st_steps")
    size = o2.select_slider("Output size (px)", [64, 128, 192, 256, 384], value=128, key="st_size")
    optimizer = o3.radio("Optimizer", ["lbfgs", "adam"], horizontal=True, key="st_opt",
                         help="L-BFGS as in the paper (fewer, costlier steps); Adam is cheaper per step.")
    init = o4.radio("Start from", ["content", "noise", "style"], horizontal=True, key="st_init")



def thumbnail(image, side: int) -> np.ndarray:
    """The image with its longer side ``side`` (what the optimisation works on)."""
    copy = image.copy()
    scale = side / max(copy.size)
    return np.asarray(copy.resize((max(1, round(copy.width * scale)), max(1, round(copy.height * scale)))))


chart(plots.image_grid({f"Content: {content_label}": thumbnail(content, 256),
                        f"Style: {style_label}": thumbnail(style, 256)}, cols=2, height_per_row=300), key="st_inputs")

params = (weights, image_digest(content), image_digest(style), style_exp, tv_weight, preserve, tuple(style_layers),
          content_layer, steps, size, optimizer, init)


def weighted(losses: dict[str, list[float]], style_exp: int, tv_weight: float) -> dict[str, list[float]]:
    """The loss terms as they enter the total (times their weights); TV only when it is used."""
    scale = {"total": 1.0, "content": 1.0, "style": 10.0 ** style_exp, "tv": tv_weight}
    names = {"total": "total", "content": "content × 1", "style": f"style × 1e{style_exp}", "tv": f"TV × {tv_weight:g}"}
    return {names[k]: [x * scale[k] for x in v] for k, v in losses.items() if k in scale and scale[k] > 0 and v}


def live(state, slot) -> None:
    with slot.container():
        p1, p2 = st.columns([1, 1.4])
        if state.preview is not None:
            p1.image(state.preview, caption=f"Preview — step {state.step}/{state.total}", width="stretch")
        if state.losses:
            with p2:
                st.plotly_chart(plots.loss_curves(weighted(state.losses, style_exp, tv_weight), title="Losses (live)"), width="stretch")


def work(progress, cancel):
    handle = get_engine().model(MODEL, weights, allow_download=weights is not None and not offline)
    return style_transfer(handle, content, style, steps=steps, size=size, optimizer=optimizer, init=init,
                          content_weight=1.0, style_weight=10.0 ** style_exp, tv_weight=tv_weight,
                          style_layers=style_layers, content_layer=content_layer, preserve_color=preserve,
                          preview_every=max(1, steps // 10), progress=progress, cancel=cancel)


state = task_state("style")
if run_controls("style", "Transfer style", help="Loads VGG-19 on first use (a few seconds)."):
    if not style_layers:
        st.error("Choose at least one style layer.", icon=":material/error:")
    else:
        state = run_task("style", params, work, live=live)
show_status(state, "Style transfer")

result = state.result.image if state.status == "done" and state.result is not None else state.preview
if result is not None:
    r1, r2 = st.columns([1, 1.4])
    with r1:
        chart(plots.image_figure(result, title="Result" if state.status == "done" else "Partial result",
                                 height=360), key="st_result")
    with r2:
        if state.status == "done":
            raw = {k: [h[k] for h in state.result.history if k in h] for k in ("total", "content", "style", "tv")}
        else:
            raw = state.losses
        run_style_exp, run_tv = state.params[3], state.params[4]  # the weights of that run
        history = {k: v for k, v in weighted(raw, run_style_exp, run_tv).items() if max(v) > 0}
        if history:
            chart(plots.loss_curves(history, title="Losses per step"), key="st_losses")
    download_buttons([("Download PNG", to_png_bytes(result), "cnnviz-style-transfer.png", "image/png")], key="st")
    if state.params is not None and state.params[0] is None:
        st.caption("Made with random VGG-19 weights: a demonstration of the mechanics, not a stylisation.")
    if state.params is not None and state.params != params:
        st.caption("Settings changed since this run: press **Transfer style** to update.")
