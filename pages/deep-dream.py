"""Deep Dream & hallucination: amplify what a layer already sees in the image."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import SAMPLES, CnnvizError, image_digest, load_image, plots
from cnnviz_core.images import to_png_bytes
from cnnviz_ui import chart, download_buttons, error_message, page_header, page_selection, require_model, \
    run_controls, run_task, show_status, task_state
from cnnviz_ui import services as svc
from cnnviz_ui.image_set import IMAGE_TYPES
from cnnviz_ui.state import cached_sample
from cnnviz_ui.widgets import clamp_int, fits_page, keep_in, reset_on_model_change, target_picker

GUIDES = ("No guide", "Sample", "Upload")

page_header(
    "Deep Dream runs the network *backwards*: gradient ascent on the image makes a layer's activations "
    "stronger, so whatever the layer faintly sees gets painted in. Octaves (a pyramid of scales) and random "
    "jitter keep the patterns large and smooth (Mordvintsev, Olah & Tyka, *Inceptionism*, Google Research 2015).",
)
sel = page_selection()
handle = require_model(sel)
convs = handle.conv_layers
if not fits_page(handle, ["hooks", "conv"]):
    st.stop()
reset_on_model_change(handle, "dd_layer", "dd_channel", "dd_class")

mode = st.segmented_control("Amplify", ["A layer", "One channel", "A class"], default="A layer", key="dd_mode",
                            help="Layer: all its channels (the classic Deep Dream). Channel: one feature. "
                                 "Class: the class logit (class hallucination, Simonyan et al. 2014).")
mode = mode or "A layer"
c1, c2 = st.columns([1.5, 1])
layer, channel, class_index = None, None, None
if mode in ("A layer", "One channel"):
    keep_in("dd_layer", convs, convs[len(convs) // 2])
    layer = c1.selectbox("Layer", convs, key="dd_layer",
                         help="Early layers paint strokes and textures, deeper layers parts and objects.")
    if mode == "One channel":
        n_channels = svc.layer_channels(handle, layer)
        clamp_int("dd_channel", 0, n_channels - 1, 0)
        channel = int(c2.number_input("Channel", 0, n_channels - 1, key="dd_channel"))
else:
    with c1:
        picked = target_picker(handle, sel, key="dd_class", label="Class to hallucinate")
    class_index = picked if picked is not None else "top"

guide, guide_label = None, None
if mode == "A layer":
    g1, g2 = st.columns([1, 1.5])
    guide_source = g1.radio("Guide image", GUIDES, horizontal=True, key="dd_guide_source",
                            help="Guided dreaming (the deepdream notebook's objective_guide): at every position, "
                                 "amplify the guide's best-matching feature instead of the layer's own. "
                                 "Cost: one extra forward pass of the guide; the steps cost the same.")
    if guide_source == "Sample":
        names = list(SAMPLES)
        keep_in("dd_guide_sample", names, names[-1])
        guide_label = g2.selectbox("Guide sample", names, key="dd_guide_sample")
        guide = cached_sample(guide_label)
    elif guide_source == "Upload":
        upload = g2.file_uploader("Guide file", type=IMAGE_TYPES, key="dd_guide_upload")
        if upload is not None:
            try:
                guide, guide_label = load_image(upload.getvalue(), max_side=1024), upload.name
            except CnnvizError as exc:
                st.error(error_message(exc), icon=":material/broken_image:")
        else:
            g2.caption("No guide file yet: dreaming without a guide.")
else:
    st.caption("A guide image works with a whole layer (*Amplify: A layer*), not with a channel or a class.")

s1, s2, s3, s4, s5, s6 = st.columns(6)
octaves = s1.slider("Octaves", 1, 6, 3, key="dd_octaves")
octave_scale = s2.select_slider("Octave scale", [1.2, 1.3, 1.4, 1.6, 2.0], value=1.4, key="dd_octave_scale",
                                help="Each octave is this much smaller than the next: larger = coarser, bigger "
                                     "patterns and cheaper small octaves.")
steps = s3.slider("Steps per octave", 2, 40, 8, key="dd_steps")
step_size = s4.select_slider("Step size", [0.002, 0.005, 0.01, 0.02, 0.05], value=0.01, key="dd_step")
jitter = s5.slider("Jitter (px)", 0, 64, 16, step=4, key="dd_jitter")
max_side = s6.select_slider("Image size (longer side)", [128, 192, 256, 384, 512], value=256, key="dd_size")

if class_index == "top":
    from cnnviz_ui.compute import predict

    class_index = predict(handle, sel, topk=1)[0][0]
params = svc.DreamParams(handle.key, sel.digest, layer, channel, class_index,
                         image_digest(guide) if guide is not None else None, octaves, float(octave_scale), steps,
                         float(step_size), jitter, max_side)
st.caption(f"Cost: {svc.dream_cost(params, sel.image.size)} Larger images and more octaves take longer.")


def live(state, slot) -> None:
    if state.preview is not None:
        slot.image(state.preview, caption=f"Preview — {state.message}, step {state.step}/{state.total}", width=384)


state = task_state("dream")
if run_controls("dream", "Dream"):
    state = run_task("dream", params, lambda progress, cancel: svc.run_dream(handle, sel.image, guide, params,
                                                                             progress, cancel), live=live)
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
        if isinstance(state.params, svc.DreamParams) and state.params.guide is not None:
            label += " (guided)"
        chart(plots.image_figure(after, title=label, height=380), key="dd_after")
    else:
        st.info("Press **Dream** to amplify the selected layer in this image.", icon=":material/touch_app:")
if guide is not None:
    st.image(svc.thumbnail(guide, 160), caption=f"Guide: {guide_label}")
if after is not None:
    history = state.result.history if state.status == "done" else state.losses.get("objective", [])
    if history:
        chart(plots.loss_curves({"objective": history}, title="Objective per step (all octaves)",
                                ylabel="objective"), key="dd_curve")
    download_buttons([("Download PNG", to_png_bytes(after), "cnnviz-deep-dream.png", "image/png")], key="dd")
    if state.params is not None and state.params != params:
        st.caption("Settings changed since this run: press **Dream** to update.")
