"""Filters & feature maps: kernels of any conv layer, its feature maps for the image, and
activation maximization of a channel, a neuron or a class logit."""
from __future__ import annotations

import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import plots
from cnnviz_ui import chart, guard, page_header, page_selection, require_model, run_controls, run_task, \
    show_status, task_state
from cnnviz_ui import services as svc
from cnnviz_ui import services_units as units
from cnnviz_ui.compute import feature_maps, model_view
from cnnviz_ui.widgets import (clamp_int, export_buttons, grid_png_bytes, json_bytes, keep_in, map_panels, npy_bytes,
                               npz_bytes, png_bytes, reset_on_model_change)

VIEW_LABELS = {"auto": "Automatic", "rgb": "RGB (first layer)", "per_channel": "Per input channel",
               "summary": "Summary (L2 norm over inputs)"}

page_header(
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
# Widgets whose options come from the model start again when the sidebar's model changes.
reset_on_model_change(handle, "filters_layer", "filters_n", "filters_am_channel", "filters_am_class",
                      "filters_am_y", "filters_am_x", "filters_learn_layer", "filters_view")
keep_in("filters_layer", convs)
layer = st.selectbox("Convolution layer", convs, key="filters_layer")

st.subheader("Kernels")
facts = svc.kernel_facts(handle, layer)
max_filters = min(128, facts.filters)
c1, c2, c3 = st.columns([1.2, 1, 1])
with guard("Kernels"):
    keep_in("filters_view", facts.views)
    view = c1.radio("View", facts.views, format_func=VIEW_LABELS.get, horizontal=True, key="filters_view")
    scaling = c2.radio("Scaling", ["per_tile", "shared"], horizontal=True, key="filters_scaling",
                       format_func={"per_tile": "each kernel alone", "shared": "one scale for the layer"}.get)
    if max_filters > 8:
        clamp_int("filters_n", 8, max_filters, min(64, max_filters))
        n_filters = c3.slider("Filters shown", 8, max_filters, key="filters_n")
    else:
        n_filters = max_filters
    kernels = svc.kernel_image(handle, layer, view, scaling, n_filters)
    k = facts.kernel
    chart(plots.image_figure(kernels.image, title=f"{layer}: {facts.filters} filters × {facts.inputs} inputs, "
                                                  f"{k}×{k} ({VIEW_LABELS[kernels.view]})", height=360),
          key="filters_kernels")
    st.caption("Grey = 0; brighter/darker = positive/negative weights (summary: weight magnitude)."
               + (" Random weights: no learned pattern expected." if "random" in handle.weights_label else ""))
    stem = f"kernels-{layer}"
    export_buttons("filters_kernels", stem, png=lambda: png_bytes(kernels.image),
                   npy=lambda: npy_bytes(svc.kernel_weights(handle, layer)), what="Weights", png_label="Kernels (PNG)")

if not handle.hookable:
    st.info("Feature maps, activation maximization and the layer view need hooks, which a TorchScript program "
            "cannot take: load a state_dict or a .pt2 of this model for them.", icon=":material/info:")
    st.stop()

st.subheader("Feature maps for the image")
f1, f2, f3 = st.columns([1, 1, 1])
n_maps = f1.slider("Channels", 4, 64, 16, step=4, key="filters_maps_n")
rank = f2.radio("Rank channels by", ["mean", "max"], horizontal=True, key="filters_rank")
shared_maps = f3.toggle("One colour scale", value=False, key="filters_maps_shared")
order = []
with guard("Feature maps"):
    fmap = feature_maps(handle, sel, [layer])[layer]
    order = svc.ranked_channels(fmap, n_maps, rank)
    labels = [f"ch {c}" for c in order]
    left, right = st.columns([1, 3])
    with left:
        chart(plots.image_figure(model_view(handle, sel), title="Input", height=260), key="filters_input")
    with right:
        chart(plots.feature_map_grid(fmap[order], labels, cols=8, shared_scale=shared_maps,
                                     title=f"{layer}: top {len(order)} of {fmap.shape[0]} channels by {rank}"),
              key="filters_maps")
    export_buttons("filters_maps", f"feature-maps-{layer}",
                   png=lambda: grid_png_bytes(map_panels(fmap[order], labels, shared=shared_maps), cols=8),
                   npz=lambda: npz_bytes({"image": model_view(handle, sel), "feature_maps": fmap,
                                          "shown_channels": order}),
                   json=lambda: json_bytes({"model": handle.name, "layer": layer, "rank": rank,
                                            "channels": order, "maps": fmap[order]}))

st.subheader("Activation maximization")
st.caption("Gradient ascent on the pixels (Adam) to maximise the chosen unit's mean activation, with random "
           "jitter/scale/rotation each step so the result is robust rather than adversarial noise.")
kind = st.radio("Maximize", svc.AM_TARGETS, horizontal=True, key="filters_am_kind",
                help="Channel: the mean of one feature map. Neuron: one cell of it. Class logit: the score of a "
                     "class (Simonyan et al. 2014, class models).")
st.caption(f"Cost: {svc.AM_COST[kind]}; about one forward and one backward pass per step.")
a1, a2, a3, a4 = st.columns(4)
channel, position, class_index = 0, None, None
if kind == "Class logit":
    classes = list(range(handle.num_classes))
    keep_in("filters_am_class", classes)
    class_index = int(a1.selectbox("Class", classes, format_func=handle.class_name, key="filters_am_class"))
else:
    clamp_int("filters_am_channel", 0, facts.filters - 1, int(order[0]) if len(order) else 0)
    channel = int(a1.number_input("Channel", 0, facts.filters - 1, key="filters_am_channel"))
    if kind == "Neuron":
        with guard("Layer"):
            _, map_h, map_w = svc.layer_grid_side(handle, sel, layer)
            clamp_int("filters_am_y", 0, map_h - 1, map_h // 2)
            clamp_int("filters_am_x", 0, map_w - 1, map_w // 2)
            n1, n2 = a1.columns(2)
            position = (int(n1.number_input("Row (y)", 0, map_h - 1, key="filters_am_y")),
                        int(n2.number_input("Column (x)", 0, map_w - 1, key="filters_am_x")))
            st.caption(f"The cell of {layer}'s {map_h}×{map_w} grid for the model's {handle.input_size} px input.")
steps = a2.slider("Steps", 8, 512, 64, step=8, key="filters_am_steps")
param = a3.radio("Image parametrization", ["fourier", "pixel"], horizontal=True, key="filters_am_param",
                 help="Fourier: decorrelated colour + frequency space (Olah et al. 2017), fewer high-frequency artefacts.")
lr = a4.select_slider("Learning rate", [0.01, 0.02, 0.05, 0.1, 0.2], value=0.05, key="filters_am_lr")
params = svc.maximize_params(handle, kind, layer, channel, position, class_index, steps, param, lr)
state = task_state("filters_am")


def live(s, slot) -> None:
    if s.preview is not None:
        slot.image(s.preview, caption=f"step {s.step}/{s.total}", width=256)


if run_controls("filters_am", "Maximize" if kind != "Channel" else "Maximize channel"):
    state = run_task("filters_am", params, lambda progress, cancel: svc.run_maximize(handle, params, progress, cancel),
                     live=live)
show_status(state, "Activation maximization")
result = state.result if state.status == "done" else None
shown = result.image if result is not None else state.preview
if shown is not None:
    run = state.params if isinstance(state.params, svc.MaximizeParams) else params
    title = (f"class {handle.class_name(run.class_index)}" if run.class_index is not None
             and run.model == handle.key else run.label)
    r1, r2 = st.columns([1, 1.4])
    with r1:
        chart(plots.image_figure(shown, title=title, height=300), key="filters_am_image")
    with r2:
        history = result.history if result is not None else state.losses.get("objective", [])
        if history:
            chart(plots.loss_curves({"mean activation": history}, title="Objective per step",
                                      ylabel="objective"),
                  key="filters_am_curve")
        if result is not None:
            st.markdown(f"Mean activation: **{result.start_value:.3g} → {result.final_value:.3g}**.")
    export_buttons("filters_am", "activation-maximization", png=png_bytes(shown), png_label="Image (PNG)",
                   json=lambda: json_bytes({"target": run.label, "steps": run.steps,
                                            "parametrization": run.parametrization, "lr": run.lr,
                                            "history": list(history or [])}), what="Objective")
    if state.params is not None and state.params != params:
        st.caption("Settings changed since this run: press *Maximize* to update.")

st.subheader("What each layer learned")
st.caption("Zeiler & Fergus 2014, Fig. 2: for a layer, the strongest activations of its channels across many images "
           "(one per image), each shown as its deconvnet projection beside the image patch under its receptive field. "
           "Move between layers to see edges turn into textures and parts (with trained weights).")
learn_layers = units.unit_layers(handle)
keep_in("filters_learn_layer", learn_layers, layer if layer in learn_layers else None)
w1, w2, w3, w4, w5 = st.columns([1.3, 1, 1, 1, 1])
learn_layer = w1.selectbox("Layer", learn_layers, key="filters_learn_layer")
source = w2.radio("Images", units.IMAGE_SETS, key="filters_learn_set")
count = w3.select_slider("Scenes", [16, 32, 64, 128, 256, 512, 1000], value=64, key="filters_learn_count",
                         disabled=source != "Our scenes")
n_channels = w4.slider("Most active channels", 1, 16, 4, key="filters_learn_channels")
top_k = w5.slider("Top activations each", 1, 9, 4, key="filters_learn_k")
learn_params = svc.LearnParams(handle.key, learn_layer, source, count, n_channels, top_k)
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
    export_buttons("filters_learn", "layer-learned", png=lambda: grid_png_bytes(svc.learned_panels(learn.result),
                                                                                 cols=2 * max(len(v) for v in
                                                                                              learn.result.values())))
    if learn.params != learn_params:
        st.caption("Settings changed since this run: press *Find the top activations* to update.")
