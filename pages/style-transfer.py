"""Style transfer (Gatys et al. 2016): the content of one image in the style of another."""
from __future__ import annotations

import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import SAMPLES, CnnvizError, image_digest, load_image, plots
from cnnviz_core.featureviz import STYLE_LAYERS
from cnnviz_core.images import to_png_bytes
from cnnviz_ui import chart, download_buttons, error_message, page_header, page_selection, run_controls, \
    run_task, show_status, task_state
from cnnviz_ui import services as svc
from cnnviz_ui.image_set import IMAGE_TYPES
from cnnviz_ui.state import cached_sample

RANDOM, IMAGENET = "Random weights (mechanics demo)", "ImageNet weights"
CONTENT_LAYERS = ("conv4_2", "conv3_2", "conv5_2")

page_header(
    "Gatys, Ecker & Bethge (*Image Style Transfer Using CNNs*, CVPR 2016) optimise an image so that its deep "
    "VGG-19 features match the **content** photo while the correlations between feature channels (Gram "
    "matrices) of several layers match the **style** image.",
)

sel = page_selection()
if sel.user_model:
    st.info("Style transfer needs VGG-19's convolution layers (conv1_1 … conv5_2), so this page always runs on "
            f"VGG-19, not on {sel.model_name}; the other pages use your model.", icon=":material/info:")
network = svc.style_network()
offline = svc.offline()
if network.ready:
    options = [IMAGENET, RANDOM]
elif offline:
    options = [RANDOM]
    st.info(
        f"VGG-19's ImageNet weights ({network.download_mb:.0f} MB) are not in the cache and this app is offline. "
        f"To get real stylisation, {network.where}, and reload. Until then the page runs with "
        "random weights: the optimisation works and the losses fall, but the picture is not a painting.",
        icon=":material/info:",
    )
else:
    options = [f"{IMAGENET} (download {network.download_mb:.0f} MB on first run)", RANDOM]
weights_choice = st.radio("Network", options, horizontal=True, key="st_weights")
weights = None if weights_choice == RANDOM else "default"
st.caption(f"VGG-19 runs on the sidebar's device: **{sel.device}**.")


def pick_image(label: str, key: str, default_sample: str, allow_sidebar: bool):
    sources = (["Sidebar image"] if allow_sidebar else []) + ["Sample", "Upload"]
    source = st.radio(label, sources, horizontal=True, key=f"{key}_source")
    if source == "Sidebar image":
        return sel.image, sel.image_label
    if source == "Sample":
        names = list(SAMPLES)
        name = st.selectbox(f"{label} sample", names, index=names.index(default_sample), key=f"{key}_sample")
        return cached_sample(name), name
    upload = st.file_uploader(f"{label} file", type=IMAGE_TYPES, key=f"{key}_upload")
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
    style_layers = l1.multiselect("Style layers", list(STYLE_LAYERS), default=list(STYLE_LAYERS), key="st_layers",
                                  wrap=True)
    content_layer = l2.selectbox("Content layer", CONTENT_LAYERS, key="st_content_layer")
    layer_weights: list[float] = []
    if style_layers:
        st.markdown("**Weight of each style layer** (relative; normalised to sum 1). Low layers carry colour and "
                    "fine texture, high layers larger motifs. Cost: none, every chosen layer is computed anyway; "
                    "each extra *layer* adds one Gram matrix per step, and a deeper one runs more of VGG-19.")
        cols = st.columns(len(style_layers))
        for col, name in zip(cols, style_layers):
            layer_weights.append(float(col.select_slider(name, [0.0, 0.25, 0.5, 1.0, 2.0, 4.0], value=1.0,
                                                         key=f"st_lw_{name}")))
    o1, o2, o3, o4 = st.columns(4)
    steps = o1.slider("Steps", 5, 300, 30, step=5, key="st_steps")
    size = o2.select_slider("Output size (px)", [64, 128, 192, 256, 384], value=128, key="st_size")
    optimizer = o3.radio("Optimizer", ["lbfgs", "adam"], horizontal=True, key="st_opt",
                         help="L-BFGS as in the paper (fewer, costlier steps); Adam is cheaper per step.")
    init = o4.radio("Start from", ["content", "noise", "style"], horizontal=True, key="st_init")


chart(plots.image_grid({f"Content: {content_label}": svc.thumbnail(content, 256),
                        f"Style: {style_label}": svc.thumbnail(style, 256)}, cols=2, height_per_row=300), key="st_inputs")

params = svc.StyleParams(weights, sel.device, image_digest(content), image_digest(style), style_exp, tv_weight,
                         preserve, tuple(style_layers), tuple(layer_weights), content_layer, steps, size, optimizer,
                         init)


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


state = task_state("style")
if run_controls("style", "Transfer style", help="Loads VGG-19 on first use (a few seconds)."):
    if not style_layers:
        st.error("Choose at least one style layer.", icon=":material/error:")
    elif not any(layer_weights):
        st.error("Give at least one style layer a weight above 0.", icon=":material/error:")
    else:
        state = run_task("style", params, lambda progress, cancel: svc.run_style(content, style, params, progress,
                                                                                 cancel), live=live)
show_status(state, "Style transfer")

result = state.result.image if state.status == "done" and state.result is not None else state.preview
run = state.params if isinstance(state.params, svc.StyleParams) else None
if result is not None and run is not None:
    r1, r2 = st.columns([1, 1.4])
    with r1:
        chart(plots.image_figure(result, title="Result" if state.status == "done" else "Partial result",
                                 height=360), key="st_result")
    with r2:
        if state.status == "done":
            raw = {k: [h[k] for h in state.result.history if k in h] for k in ("total", "content", "style", "tv")}
        else:
            raw = state.losses
        history = {k: v for k, v in weighted(raw, run.style_exp, run.tv_weight).items() if max(v) > 0}
        if history:
            chart(plots.loss_curves(history, title="Losses per step"), key="st_losses")
    download_buttons([("Download PNG", to_png_bytes(result), "cnnviz-style-transfer.png", "image/png")], key="st")
    if run.weights is None:
        st.caption("Made with random VGG-19 weights: a demonstration of the mechanics, not a stylisation.")
    if run != params:
        st.caption("Settings changed since this run: press **Transfer style** to update.")
