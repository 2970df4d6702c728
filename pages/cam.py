"""CAM & Grad-CAM: any set of attribution methods side by side, per class and per layer."""
from __future__ import annotations

import io
import json

import numpy as np
import streamlit as st

from cnnviz_core import plots
from cnnviz_core.attribution import METHODS
from cnnviz_ui import chart, download_buttons, guard, page_header, page_selection, require_model, run_controls, \
    run_task, show_status, task_state
from cnnviz_ui.compute import explain_results, model_view, predict
from cnnviz_ui.metrics_view import auc_controls, auc_curves, auc_subtitles
from cnnviz_ui.widgets import method_caption, target_picker

DEFAULT_METHODS = ["cam", "gradcam", "gradcam++", "layercam", "eigencam", "guided_gradcam"]
SLOW = tuple(k for k, m in METHODS.items() if m.long_running)

page_header(
    "CAM & Grad-CAM", ":material/local_fire_department:",
    "Class activation maps weight the feature maps of a convolution layer to show **where** the network found "
    "evidence for a class. Pick any methods, a layer and a class; hover a map to read its values.",
)
sel = page_selection()
handle = require_model(sel)
layers = handle.cam_layers

c1, c2, c3 = st.columns([2.2, 1, 1.2])
methods = c1.multiselect("Methods", list(METHODS), default=DEFAULT_METHODS, key="cam_methods",
                         format_func=lambda k: METHODS[k].display_name + (" ⏱" if k in SLOW else ""),
                         help="⏱ = needs many forward passes: computed when you press *Compute slow methods*.")
if st.session_state.get("cam_layer") not in layers:
    st.session_state["cam_layer"] = handle.default_layer
layer = c2.selectbox("Layer", layers, key="cam_layer", help=f"Default: {handle.default_layer} (last spatial layer).")
with c3:
    target = target_picker(handle, sel, key="cam_target")

d1, d2, d3, d4 = st.columns(4)
colormap = d1.selectbox("Colormap", plots.COLORMAPS, key="cam_cmap")
opacity = d2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="cam_opacity")
shared = d3.toggle("One colour scale for the grid", value=False, key="cam_shared",
                   help="On: raw values on one scale (compare magnitudes). Off: each map scaled to its own range.")
ncols = d4.slider("Columns", 2, 6, 4, key="cam_cols")

slow_params: dict = {}
chosen_slow = [m for m in methods if m in SLOW]
if chosen_slow:
    with st.expander("Parameters of the slow methods", expanded=False):
        if "scorecam" in chosen_slow:
            slow_params["channels"] = st.slider("Score-CAM: channels used (highest mean activation)", 8, 256, 64,
                                                step=8, key="cam_sc_channels")
        if "smoothgrad" in chosen_slow:
            slow_params["samples"] = st.slider("SmoothGrad: noisy samples", 5, 50, 20, key="cam_sg_samples")
        if "integrated_gradients" in chosen_slow:
            slow_params["steps"] = st.slider("Integrated Gradients: steps", 8, 64, 32, step=8, key="cam_ig_steps")

view = model_view(handle, sel)
fast = [m for m in methods if m not in SLOW]
slow_key = (handle.key, sel.digest, layer, target, tuple(chosen_slow), tuple(sorted(slow_params.items())))
slow_state = task_state("cam_slow")
results: dict = {}
with guard("Attribution"):
    if fast:
        results.update(explain_results(handle, sel, fast, target, layer))
    if chosen_slow:
        if run_controls("cam_slow", f"Compute slow methods ({', '.join(METHODS[m].display_name for m in chosen_slow)})"):
            slow_state = run_task("cam_slow", slow_key, lambda progress, cancel: explain_results(
                handle, sel, chosen_slow, target, layer, progress=progress, cancel=cancel, **slow_params))
        show_status(slow_state, "Slow methods")
        if slow_state.status == "done" and slow_state.params == slow_key:
            results.update(slow_state.result)
        else:
            st.caption("Slow methods are not computed for these settings yet.")


def display_map(result) -> np.ndarray:
    """(H, W) map of a result: raw CAM values, or max |gradient| over colours for gradient methods."""
    return plots.gradient_magnitude(result.raw) if result.family == "gradient" else np.asarray(result.raw)


ok = {k: r for k, r in results.items() if r.error is None}
for k, r in results.items():
    if r.error:
        st.warning(f"{METHODS[k].display_name}: {r.error}", icon=":material/info:")

VIEWS = ["Methods side by side", "Per class", "Per layer"]
compare = st.segmented_control("Compare", VIEWS, default=VIEWS[0], key="cam_view") or VIEWS[0]
if compare == VIEWS[0]:
    if not ok:
        st.info("Choose at least one method that applies to this model.")
    else:
        first = next(iter(ok.values()))
        st.markdown(f"Explaining **{first.info.get('target_name', first.target)}** at layer `{layer}`.")
        maps = {METHODS[k].display_name: display_map(r) for k, r in ok.items()}
        curves = auc_controls(handle, sel, ok, layer)
        aucs = auc_subtitles(curves)
        subtitles = {METHODS[k].display_name: aucs[k] for k in ok if k in aucs}
        chart(plots.overlay_grid(view, maps, colormap=colormap, opacity=opacity, shared_scale=shared, cols=ncols,
                                 subtitles=subtitles), key="cam_grid")
        panels = {name: plots.overlay(view, m, colormap, opacity) for name, m in maps.items()}

        def npz() -> bytes:
            buf = io.BytesIO()
            np.savez_compressed(buf, image=view, **{k: r.raw for k, r in ok.items()})
            return buf.getvalue()

        def as_json() -> bytes:
            return json.dumps({"model": handle.name, "layer": layer, "target": first.target,
                               "target_name": first.info.get("target_name"),
                               "maps": {k: np.round(r.raw.astype(float), 5).tolist() for k, r in ok.items()}}).encode()

        auc_curves(curves)
        download_buttons([
            ("Grid (PNG)", lambda: plots.grid_png(panels, cols=ncols), "cnnviz-cam-grid.png", "image/png"),
            ("Maps (NumPy .npz)", npz, "cnnviz-cam-maps.npz", "application/octet-stream"),
            ("Maps (JSON)", as_json, "cnnviz-cam-maps.json", "application/json"),
        ], key="cam")
    if methods:
        st.markdown(method_caption(methods))

elif compare == VIEWS[1]:
    usable = [m for m in ok] or ["gradcam"]
    k1, k2 = st.columns([2, 1])
    m_cls = k1.selectbox("Method", usable, format_func=lambda k: METHODS[k].display_name, key="cam_cls_method")
    k = k2.slider("Top-k classes", 2, min(6, handle.num_classes), min(4, handle.num_classes), key="cam_cls_k")
    with guard("Per-class comparison"):
        preds = predict(handle, sel, topk=k)
        per_class = {}
        for idx, name, prob in preds:
            r = explain_results(handle, sel, [m_cls], idx, layer)[m_cls]
            if r.error is None:
                per_class[f"{name} ({prob:.0%})"] = display_map(r)
        if per_class:
            chart(plots.overlay_grid(view, per_class, colormap=colormap, opacity=opacity, shared_scale=shared,
                                     cols=k), key="cam_classes")
            st.caption("A class-discriminative method lights different regions for different classes; "
                       "Eigen-CAM and other class-agnostic maps look the same in every column.")

else:
    cam_like = [m for m in ok if METHODS[m].uses_layer] or ["gradcam"]
    l1, l2 = st.columns([1, 2])
    m_layer = l1.selectbox("Method", cam_like, format_func=lambda k: METHODS[k].display_name, key="cam_layer_method",
                           index=cam_like.index("gradcam") if "gradcam" in cam_like else 0)
    default_layers = list(dict.fromkeys(handle.conv_layers[-4:-1] + [handle.default_layer]))
    chosen_layers = l2.multiselect("Layers", layers, default=[x for x in default_layers if x in layers],
                                   key="cam_layers", max_selections=6)
    with guard("Per-layer comparison"):
        per_layer, skipped = {}, []
        for path in chosen_layers:
            r = explain_results(handle, sel, [m_layer], target, path)[m_layer]
            if r.error is None:
                per_layer[path] = display_map(r)
            else:
                skipped.append(f"{path} ({r.error})")
        if skipped:
            st.caption("Not applicable: " + "; ".join(skipped))
        if per_layer:
            chart(plots.overlay_grid(view, per_layer, colormap=colormap, opacity=opacity, shared_scale=shared,
                                     cols=min(6, len(per_layer))), key="cam_layers_grid")
            st.caption("Earlier layers have finer resolution but less class-specific features; the last "
                       "convolutional layer is the usual compromise (Selvaraju et al. 2017, Sec. 3).")
