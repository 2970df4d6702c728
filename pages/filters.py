"""Filters & feature maps: kernels of any conv layer, its feature maps for the image, and
activation maximization of a chosen channel."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cnnviz_core import plots
from cnnviz_core.featureviz.filters import conv_weight, kernel_montage, kernel_view
from cnnviz_core.featureviz.maximize import maximize_activation
from cnnviz_core.featureviz.regularizers import Robustness
from cnnviz_ui import cached, chart, guard, page_header, page_selection, require_model, run_controls, run_task, \
    show_status, task_state
from cnnviz_ui import services_units as units
from cnnviz_ui.compute import feature_maps, model_view

VIEW_LABELS = {"auto": "Automatic", "rgb": "RGB (first layer)", "per_channel": "Per input channel",
               "summary": "Summary (L2 norm over inputs)"}

page_header(
    "Filters & feature maps", ":material/grid_view:",
    "A convolution layer is a bank of learned filters. Its **kernels** show what each filter looks for "
    "(Krizhevsky et al. 2012, Fig. 3), its **feature maps** where the image contains it (Zeiler & Fergus 2014), "
    "and **activation maximization** synthesises the input that excites one channel most "
    "(Erhan et al. 2009; Olah et al., *Feature Visualization*, Distill 2017).",
)
sel = page_selection()
handle = require_model(sel)
convs = handle.conv_layers
if not convs:
    st.info("This model has no convolution layers.")
    st.stop()
if st.session_state.get("filters_layer") not in convs:
    st.session_state["filters_layer"] = convs[0]
layer = st.selectbox("Convolution layer", convs, key="filters_layer")

st.subheader("Kernels")
weight_shape = tuple(conv_weight(handle, layer).shape)
max_filters = min(128, weight_shape[0])
c1, c2, c3 = st.columns([1.2, 1, 1])
with guard("Kernels"):
    views = ["auto", "rgb", "per_channel", "summary"] if weight_shape[1] == 3 else ["auto", "per_channel", "summary"]
    view = c1.radio("View", views, format_func=VIEW_LABELS.get, horizontal=True, key="filters_view")
    scaling = c2.radio("Scaling", ["per_tile", "shared"], horizontal=True, key="filters_scaling",
                       format_func={"per_tile": "each kernel alone", "shared": "one scale for the layer"}.get)
    n_filters = c3.slider("Filters shown", 8, max_filters, min(64, max_filters), key="filters_n") \
        if max_filters > 8 else max_filters
    used = kernel_view(conv_weight(handle, layer), view)
    k = weight_shape[-1]
    image = cached(("kernels", handle.key, layer, used, scaling, n_filters),
                   lambda: kernel_montage(handle, layer, view=used, scaling=scaling, max_filters=n_filters,
                                          max_channels=16, upscale=max(2, 30 // k), pad=3))
    grey = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    chart(plots.image_figure(grey, title=f"{layer}: {weight_shape[0]} filters × {weight_shape[1]} inputs, "
                                         f"{k}×{k} ({VIEW_LABELS[used]})", height=360), key="filters_kernels")
    st.caption("Grey = 0; brighter/darker = positive/negative weights (summary: weight magnitude)."
               + (" Random weights: no learned pattern expected." if "random" in handle.weights_label else ""))

if not handle.hookable:
    st.info("Feature maps, activation maximization and the layer view need hooks, which a TorchScript program "
            "cannot take: load a state_dict or a .pt2 of this model for them.", icon=":material/info:")
    st.stop()

st.subheader("Feature maps for the image")
f1, f2, f3 = st.columns([1, 1, 1])
n_maps = f1.slider("Channels", 4, 64, 16, step=4, key="filters_maps_n")
rank = f2.radio("Rank channels by", ["mean", "max"], horizontal=True, key="filters_rank")
shared_maps = f3.toggle("One colour scale", value=False, key="filters_maps_shared")
order = np.arange(0)
with guard("Feature maps"):
    fmap = feature_maps(handle, sel, [layer])[layer]
    flat = fmap.reshape(fmap.shape[0], -1)
    scores = flat.mean(axis=1) if rank == "mean" else flat.max(axis=1)
    order = np.argsort(-scores, kind="stable")[:n_maps]
    left, right = st.columns([1, 3])
    with left:
        chart(plots.image_figure(model_view(handle, sel), title="Input", height=260), key="filters_input")
    with right:
        chart(plots.feature_map_grid(fmap[order], [f"ch {c}" for c in order], cols=8, shared_scale=shared_maps,
                                     title=f"{layer}: top {len(order)} of {fmap.shape[0]} channels by {rank}"),
              key="filters_maps")

st.subheader("Activation maximization")
st.caption("Gradient ascent on the pixels (Adam) to maximise the chosen channel's mean activation, with random "
           "jitter/scale/rotation each step so the result is robust rather than adversarial noise.")
channels = weight_shape[0]
a1, a2, a3, a4 = st.columns(4)
channel = a1.number_input("Channel", 0, channels - 1, int(order[0]) if len(order) else 0, key="filters_am_channel")
steps = a2.slider("Steps", 8, 512, 64, step=8, key="filters_am_steps")
param = a3.radio("Image parametrization", ["fourier", "pixel"], horizontal=True, key="filters_am_param",
                 help="Fourier: decorrelated colour + frequency space (Olah et al. 2017), fewer high-frequency artefacts.")
lr = a4.select_slider("Learning rate", [0.01, 0.02, 0.05, 0.1, 0.2], value=0.05, key="filters_am_lr")
params = (handle.key, layer, int(channel), steps, param, lr)
state = task_state("filters_am")


def live(s, slot) -> None:
    if s.preview is not None:
        slot.image(s.preview, caption=f"step {s.step}/{s.total}", width=256)


if run_controls("filters_am", "Maximize channel"):
    state = run_task("filters_am", params, lambda progress, cancel: maximize_activation(
        handle, layer, int(channel), steps=steps, parametrization=param, lr=lr, robustness=Robustness(),
        preview_every=max(1, steps // 16), progress=progress, cancel=cancel), live=live)
show_status(state, "Activation maximization")
result = state.result if state.status == "done" else None
shown = result.image if result is not None else state.preview
if shown is not None:
    r1, r2 = st.columns([1, 1.4])
    with r1:
        chart(plots.image_figure(shown, title=f"{layer} channel {state.params[2] if state.params else channel}",
                                 height=300), key="filters_am_image")
    with r2:
        history = result.history if result is not None else state.losses.get("objective", [])
        if history:
            chart(plots.loss_curves({"mean activation": history}, title="Objective per step",
                                      ylabel="objective"),
                  key="filters_am_curve")
        if result is not None:
            st.markdown(f"Mean activation: **{result.start_value:.3g} → {result.final_value:.3g}**.")
    if state.params is not None and state.params != params:
        st.caption("Settings changed since this run: press *Maximize channel* to update.")

st.subheader("What each layer learned")
st.caption("Zeiler & Fergus 2014, Fig. 2: for a layer, the strongest activations of its channels across many images "
           "(one per image), each shown as its deconvnet projection beside the image patch under its receptive field. "
           "Move between layers to see edges turn into textures and parts (with trained weights).")
learn_layers = units.unit_layers(handle)
if st.session_state.get("filters_learn_layer") not in learn_layers:
    st.session_state["filters_learn_layer"] = layer if layer in learn_layers else learn_layers[0]
w1, w2, w3, w4, w5 = st.columns([1.3, 1, 1, 1, 1])
learn_layer = w1.selectbox("Layer", learn_layers, key="filters_learn_layer")
source = w2.radio("Images", units.IMAGE_SETS, key="filters_learn_set")
count = w3.select_slider("Scenes", [16, 32, 64, 128, 256, 512, 1000], value=64, key="filters_learn_count",
                         disabled=source != "Our scenes")
n_channels = w4.slider("Most active channels", 1, 16, 4, key="filters_learn_channels")
top_k = w5.slider("Top activations each", 1, 9, 4, key="filters_learn_k")
learn_params = (handle.key, learn_layer, source, count, n_channels, top_k)
learn = task_state("filters_learn")
if run_controls("filters_learn", "Find the top activations"):
    def learn_work(progress, cancel):
        images = units.image_set(handle, source, count, seed=40_000)
        chosen = units.most_active_channels(handle, images, learn_layer, n_channels, progress, cancel)
        return units.layer_learned(handle, images, learn_layer, chosen, top_k, progress, cancel)

    learn = run_task("filters_learn", learn_params, learn_work)
show_status(learn, "Top activations")
if learn.status == "done" and learn.result:
    chart(units.learned_grid(learn.result), key="filters_learn_grid")
    if learn.params != learn_params:
        st.caption("Settings changed since this run: press *Find the top activations* to update.")
