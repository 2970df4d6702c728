"""Backprop to image: saliency, deconvnet and guided backprop side by side."""
from __future__ import annotations

import streamlit as st

from cnnviz_core import plots
from cnnviz_ui import chart, guard, page_header, page_selection, require_model
from cnnviz_ui.compute import explain_results, model_view
from cnnviz_ui.widgets import method_caption, target_picker

METHODS = ("saliency", "deconvnet", "guided_backprop")
#: What differs between the three: how each ReLU treats the signal flowing backwards.
RULES = {
    "saliency": "Plain gradient: a ReLU passes the backward signal where its **forward input** was positive.",
    "deconvnet": "A ReLU passes the backward signal where the **signal itself** is positive; the forward mask is ignored.",
    "guided_backprop": "Both masks: only where the forward input **and** the backward signal are positive.",
    "guided_gradcam": "Guided backprop multiplied by the upsampled Grad-CAM of the chosen layer: fine detail, class-specific.",
}

page_header(
    "Backprop to image", ":material/gradient:",
    "Which pixels would change the class score most? All three methods back-propagate the score of a class "
    "to the input pixels; they differ only in what each ReLU lets through on the way back.",
)
sel = page_selection()
handle = require_model(sel)

c1, c2, c3 = st.columns([1.4, 1, 1])
with c1:
    target = target_picker(handle, sel, key="bp_target")
with c2:
    display = st.radio("Show", ["Magnitude", "Signed RGB"], horizontal=True, key="bp_display",
                       help="Magnitude: max |gradient| over colour channels (Simonyan et al. 2014). "
                            "Signed RGB: 0 = grey, as the papers show reconstructions.")
with c3:
    extra = st.toggle("Add guided Grad-CAM", value=False, key="bp_guided_gradcam")
    shared = st.toggle("One colour scale for all maps", value=False, key="bp_shared", disabled=display != "Magnitude",
                       help="Off: each map stretched to its own maximum. On: magnitudes comparable across methods.")
methods = list(METHODS) + (["guided_gradcam"] if extra else [])
layer = None
if extra:
    layers = handle.cam_layers
    layer = st.selectbox("Grad-CAM layer", layers, index=layers.index(handle.default_layer), key="bp_layer")

with guard("Backprop"):
    results = explain_results(handle, sel, methods, target, layer)
    view = model_view(handle, sel)
    first = next(iter(results.values()))
    st.markdown(f"Explaining **{first.info.get('target_name', first.target)}**.")
    usable = {k: r for k, r in results.items() if r.error is None}
    for k, r in results.items():
        if r.error:
            st.warning(f"{k}: {r.error}", icon=":material/info:")
    if usable:
        cols = st.columns(len(usable) + 1)
        with cols[0]:
            chart(plots.image_figure(view, title="Input", height=280), key="bp_input")
        if display == "Magnitude":
            mags = {k: plots.gradient_magnitude(r.raw) for k, r in usable.items()}
            zmin, zmax = plots.scale_range(list(mags.values())) if shared else (None, None)
            panels = {k: plots.apply_colormap(m, "Inferno", zmin, zmax) for k, m in mags.items()}
        else:
            panels = {k: plots.signed_rgb(r.raw) for k, r in usable.items()}
        from cnnviz_core.attribution import METHODS as REGISTRY

        for col, (k, panel) in zip(cols[1:], panels.items()):
            with col:
                chart(plots.image_figure(panel, title=REGISTRY[k].display_name, height=280), key=f"bp_map_{k}")
                st.caption(RULES[k])
    st.markdown(method_caption(methods))
