"""Backprop to image: saliency, deconvnet and guided backprop side by side, for a class, a channel
or one neuron (Zeiler & Fergus 2014: project any unit back to the image, with its receptive field)."""
from __future__ import annotations

import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import plots
from cnnviz_ui import chart, guard, page_header, page_selection, require_model
from cnnviz_ui.compute import explain_results, model_view
from cnnviz_ui import services_units as units
from cnnviz_ui.widgets import (export_buttons, grid_png_bytes, json_bytes, keep_in, method_caption, npz_bytes,
                               reset_on_model_change, target_picker)

METHODS = ("saliency", "deconvnet", "guided_backprop")
#: What differs between the three: how each ReLU treats the signal flowing backwards.
RULES = {
    "saliency": "Plain gradient: a ReLU passes the backward signal where its **forward input** was positive.",
    "deconvnet": "A ReLU passes the backward signal where the **signal itself** is positive; the forward mask is ignored.",
    "guided_backprop": "Both masks: only where the forward input **and** the backward signal are positive.",
    "guided_gradcam": "Guided backprop multiplied by the upsampled Grad-CAM of the chosen layer: fine detail, class-specific.",
}

page_header(
    "Which pixels would change the class score most? All three methods back-propagate the score of a class "
    "to the input pixels; they differ only in what each ReLU lets through on the way back. Explain a channel "
    "or one neuron instead to project a unit back to the image, as Zeiler & Fergus did.",
)
sel = page_selection()
handle = require_model(sel)
# Layer, channel, cell and class pickers start again when the sidebar's model changes.
reset_on_model_change(handle, "bp_unit_layer", "bp_unit_channel", "bp_unit_y", "bp_unit_x", "bp_unit_cell",
                      "bp_layer", "bp_target")

kind = st.radio("Explain", units.KINDS, horizontal=True, key="bp_kind",
                help="Class: its logit. Channel: the sum (or maximum) of one feature map. Neuron: one activation.")
unit = None
if kind != "Class":
    layers = units.unit_layers(handle)
    u1, u2, u3 = st.columns([1.4, 1, 1])
    if st.session_state.get("bp_unit_layer") not in layers:
        st.session_state["bp_unit_layer"] = layers[len(layers) // 2]
    unit_layer = u1.selectbox("Layer", layers, key="bp_unit_layer")
    with guard("Layer"):
        n_channels, map_h, map_w = units.layer_shape(handle, sel, unit_layer)
    st.session_state["bp_unit_channel"] = min(int(st.session_state.get("bp_unit_channel", 0)), n_channels - 1)
    channel = int(u2.number_input("Channel", 0, n_channels - 1, key="bp_unit_channel"))
    position = None
    if kind == "Channel":
        reduce = u3.radio("Score", ["sum", "max"], horizontal=True, key="bp_unit_reduce",
                          help="sum of the channel's map, or its maximum")
    else:
        reduce = "sum"
        where = u3.radio("Neuron", ["Strongest", "Chosen"], horizontal=True, key="bp_unit_where",
                         help="the channel's strongest activation on this image, or a cell you pick "
                              "(click the feature map, or type its row and column)")
        if where == "Chosen":
            fmap = units.channel_map(handle, sel, unit_layer, channel)
            clicked = st.session_state.get("bp_unit_cell")
            p1, p2, p3 = st.columns([2, 1, 1])
            with p1:
                event = st.plotly_chart(units.feature_map_figure(fmap, f"{unit_layer} channel {channel}: click a cell",
                                                                 clicked), key="bp_unit_map", on_select="rerun",
                                        selection_mode="points", config={"displaylogo": False})
            picked = units.selected_cell(event)
            if picked is not None and picked != clicked:
                st.session_state["bp_unit_cell"] = picked
                st.session_state["bp_unit_y"], st.session_state["bp_unit_x"] = picked
            for name, side in (("bp_unit_y", map_h), ("bp_unit_x", map_w)):  # in range after a layer change
                st.session_state[name] = min(int(st.session_state.get(name, side // 2)), side - 1)
            y = int(p2.number_input("Row (y)", 0, map_h - 1, key="bp_unit_y"))
            x = int(p3.number_input("Column (x)", 0, map_w - 1, key="bp_unit_x"))
            position = (y, x)
            st.session_state["bp_unit_cell"] = position
    unit = units.unit_target(kind, unit_layer, channel, position, reduce)

c1, c2, c3 = st.columns([1.4, 1, 1])
with c1:
    target = target_picker(handle, sel, key="bp_target") if unit is None else unit
with c2:
    display = st.radio("Show", ["Magnitude", "Signed RGB"], horizontal=True, key="bp_display",
                       help="Magnitude: max |gradient| over colour channels (Simonyan et al. 2014). "
                            "Signed RGB: 0 = grey, as the papers show reconstructions.")
with c3:
    extra = st.toggle("Add guided Grad-CAM", value=False, key="bp_guided_gradcam", disabled=unit is not None,
                      help="Class targets only: it multiplies by the class's Grad-CAM.")
    extra = extra and unit is None
    shared = st.toggle("One colour scale for all maps", value=False, key="bp_shared", disabled=display != "Magnitude",
                       help="Off: each map stretched to its own maximum. On: magnitudes comparable across methods.")
methods = list(METHODS) + (["guided_gradcam"] if extra else [])
layer = None
if extra:
    layers = handle.cam_layers
    keep_in("bp_layer", layers, handle.default_layer)
    layer = st.selectbox("Grad-CAM layer", layers, key="bp_layer")

with guard("Backprop"):
    results = explain_results(handle, sel, methods, target, layer)
    view = model_view(handle, sel)
    first = next(iter(results.values()))
    st.markdown(f"Explaining **{first.info.get('target_name', first.target)}**.")
    box = first.receptive_field
    if first.unit is not None:
        u = first.unit
        where = f" at cell ({u.y}, {u.x})" if u.y is not None else ""
        st.caption(f"{u.layer} channel {u.channel}{where}: activation {u.activation:.4g}; receptive field "
                   + (f"rows {box[0]}–{box[2] - 1}, columns {box[1]}–{box[3] - 1} (every projection is zero outside it)"
                      if box else "not traceable for this model"))
    usable = {k: r for k, r in results.items() if r.error is None}
    for k, r in results.items():
        if r.error:
            st.warning(f"{k}: {r.error}", icon=":material/info:")
    if usable:
        if display == "Magnitude":
            mags = {k: plots.gradient_magnitude(r.raw) for k, r in usable.items()}
            zmin, zmax = plots.scale_range(list(mags.values())) if shared else (None, None)
            panels = {k: plots.apply_colormap(m, "Inferno", zmin, zmax) for k, m in mags.items()}
        else:
            panels = {k: plots.signed_rgb(r.raw) for k, r in usable.items()}
        from cnnviz_core.attribution import METHODS as REGISTRY

        shown = {"Input" + (" and receptive field" if box else ""): view,
                 **{REGISTRY[k].display_name: panel for k, panel in panels.items()}}
        chart(units.box_grid_figure(shown, box), key="bp_maps")
        for col, k in zip(st.columns(len(usable) + 1)[1:], panels):
            col.caption(RULES[k])
        if box is not None:
            st.markdown("**The patch under the receptive field**, and each projection there")
            crops = st.columns(len(usable) + 1)
            crops[0].image(units.enlarge(units.crop(view, box)), caption="image patch")
            for col, (k, panel) in zip(crops[1:], panels.items()):
                col.image(units.enlarge(units.crop(panel, box)), caption=REGISTRY[k].display_name)
        named = {"Input": view, **{REGISTRY[k].display_name: panel for k, panel in panels.items()}}
        export_buttons(
            "bp", "backprop-maps", png=lambda: grid_png_bytes(named, cols=len(named)),
            npz=lambda: npz_bytes({"image": view, **{k: r.raw for k, r in usable.items()}}),
            json=lambda: json_bytes({"model": handle.name, "target": str(first.target),
                                     "target_name": first.info.get("target_name"), "layer": layer,
                                     "receptive_field": box, "maps": {k: r.raw for k, r in usable.items()}}))
        st.caption("PNG: the panels as shown; NumPy / JSON: the raw gradients (3 × H × W, w.r.t. the normalized input).")
    st.markdown(method_caption(methods))
