"""Deep Dream & hallucination: amplify what a layer already sees in the image."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cnnviz_core import plots
from cnnviz_core.featureviz import deep_dream
from cnnviz_core.images import to_png_bytes
from cnnviz_ui import chart, download_buttons, page_header, page_selection, require_model, run_controls, run_task, \
    show_status, task_state
from cnnviz_ui.widgets import fits_page, target_picker

page_header(
    "Deep Dream & hallucination", ":material/cloud:",
    "Deep Dream runs the network *backwards*: gradient ascent on the image makes a layer's activations "
    "stronger, so whatever the layer faintly sees gets painted in. Octaves (a pyramid of scales) and random "
    "jitter keep the patterns large and smooth (Mordvintsev, Olah & Tyka, *Inceptionism*, Google Research 2015).",
)
sel = page_selection()
handle = require_model(sel)
convs = handle.conv_layers
if not fits_page(handle, ["hooks", "conv"]):
    st.stop()

mode = st.segmented_control("Amplify", ["A layer", "One channel", "A class"], default="A layer", key="dd_mode",
                            help="Layer: all its channels (the classic Deep Dream). Channel: one feature. "
                                 "Class: the class logit (class hallucination, Simonyan et al. 2014).")
mode = mode or "A layer"
c1, c2 = st.columns([1.5, 1])
layer, channel, class_index = None, None, None
if mode in ("A layer", "One channel"):
    default = convs[len(convs) // 2]
    if st.session_state.get("dd_layer") not in convs:
        st.session_state["dd_layer"] = default
    layer = c1.selectbox("Layer", convs, key="dd_layer",
                         help="Early layers paint strokes and textures, deeper layers parts and objects.")
    if mode == "One channel":
        n_channels = int(handle.module(layer).out_channels)
        channel = int(c2.number_input("Channel", 0, n_channels - 1, 0, key="dd_channel"))
else:
    with c1:
        picked = target_picker(handle, sel, key="dd_class", label="Class to hallucinate")
    class_index = picked if picked is not None else "top"

s1, s2, s3, s4, s5 = st.columns(5)
octaves = s1.slider("Octaves", 1, 6, 3, key="dd_octaves")
steps = s2.slider("Steps per octave", 2, 40, 8, key="dd_steps")
step_size = s3.select_slider("Step size", [0.002, 0.005, 0.01, 0.02, 0.05], value=0.01, key="dd_step")
jitter = s4.slider("Jitter (px)", 0, 64, 16, step=4, key="dd_jitter")
max_side = s5.select_slider("Image size (longer side)", [128, 192, 256, 384, 512], value=256, key="dd_size")
st.caption(f"{octaves * steps} gradient steps in total; larger images and more octaves take longer.")

if class_index == "top":
    from cnnviz_ui.compute import predict

    class_index = predict(handle, sel, topk=1)[0][0]
params = (handle.key, sel.digest, layer, channel, class_index, octaves, steps, step_size, jitter, max_side)


def live(state, slot) -> None:
    if state.preview is not None:
        slot.image(state.preview, caption=f"Preview — {state.message}, step {state.step}/{state.total}", width=384)


state = task_state("dream")
if run_controls("dream", "Dream"):
    state = run_task("dream", params, lambda progress, cancel: deep_dream(
        handle, sel.image, layer, channel, class_index=class_index, octaves=octaves, steps=steps,
        step_size=step_size, jitter=jitter, max_side=max_side, preview_every=max(1, min(4, steps // 2)),
        progress=progress, cancel=cancel), live=live)
show_status(state, "Deep Dream")

after = state.result.image if state.status == "done" and state.result is not None else state.preview
before = sel.image.copy()
before.thumbnail((max_side, max_side))
left, right = st.columns(2)
with left:
    chart(plots.image_figure(np.asarray(before), title="Before", height=380), key="dd_before")
with right:
    if after is not None:
        label = "After" if state.status == "done" else f"After (stopped at step {state.step})"
        chart(plots.image_figure(after, title=label, height=380), key="dd_after")
    else:
        st.info("Press **Dream** to amplify the selected layer in this image.", icon=":material/touch_app:")
if after is not None:
    history = state.result.history if state.status == "done" else state.losses.get("objective", [])
    if history:
        chart(plots.loss_curves({"objective": history}, title="Objective per step (all octaves)",
                                ylabel="objective"), key="dd_curve")
    download_buttons([("Download PNG", to_png_bytes(after), "cnnviz-deep-dream.png", "image/png")], key="dd")
    if state.params is not None and state.params != params:
        st.caption("Settings changed since this run: press **Dream** to update.")
