"""CAM & Grad-CAM: any set of attribution methods side by side, per class and per layer."""
from __future__ import annotations

import html
import io
import json

import numpy as np
import streamlit as st

from cnnviz_core import plots
from cnnviz_core.attribution import METHODS
from cnnviz_ui import chart, download_buttons, guard, page_header, page_selection, require_model, run_controls, \
    run_task, show_status, task_state
from cnnviz_ui.compute import explain_image, explain_results, model_view, model_view_image, predict, predict_image
from cnnviz_ui.metrics_view import auc_controls, auc_curves, auc_subtitles
from cnnviz_ui.user_model import HOOK_FREE_METHODS
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
hookable = getattr(handle, "hookable", True)
layers = handle.cam_layers if hookable else []
offered = list(METHODS) if hookable else [m for m in METHODS if m in HOOK_FREE_METHODS]
if not hookable:
    st.info(f"{handle.spec.display_name} is TorchScript, which cannot be hooked: only the methods that need no layer "
            f"are offered ({', '.join(METHODS[m].display_name for m in offered)}).", icon=":material/info:")
if any(m not in offered for m in st.session_state.get("cam_methods", [])):
    st.session_state["cam_methods"] = [m for m in st.session_state["cam_methods"] if m in offered]
defaults = [m for m in DEFAULT_METHODS if m in offered] or offered[:2]

c1, c2, c3 = st.columns([2.2, 1, 1.2])
methods = c1.multiselect("Methods", offered, default=defaults, key="cam_methods",
                         format_func=lambda k: METHODS[k].display_name + (" ⏱" if k in SLOW else ""),
                         help="⏱ = needs many forward passes: computed when you press *Compute slow methods*.")
layer = None
if layers:
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

VIEWS = ["Methods side by side", "Per class", "Per layer", "Images × methods"]
shown_views = VIEWS[:2] + ([VIEWS[2]] if layers else []) + ([VIEWS[3]] if len(sel.images) > 1 else [])
if st.session_state.get("cam_view") not in shown_views:
    st.session_state["cam_view"] = VIEWS[0]
compare = st.segmented_control("Compare", shown_views, key="cam_view",
                               help="Images × methods appears when the sidebar holds several uploaded images.") \
    or VIEWS[0]
if compare == VIEWS[0]:
    if not ok:
        st.info("Choose at least one method that applies to this model.")
    else:
        first = next(iter(ok.values()))
        st.markdown(f"Explaining **{first.info.get('target_name', first.target)}**"
                    + (f" at layer `{layer}`." if layer else " (input-gradient methods, no layer)."))
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

elif compare == VIEWS[3]:
    set_labels = [item.label for item in sel.images]
    g1, g2 = st.columns([3, 1])
    rows = g1.multiselect("Images (one row each)", set_labels, default=set_labels[:6], max_selections=12,
                          key="cam_set_images")
    grid_methods = [m for m in methods if m not in SLOW][:6]
    g2.caption(f"Columns: the fast methods chosen above ({len(grid_methods)}, at most 6). Class: "
               + ("each image's own top prediction." if target is None else f"{handle.class_name(target)}."))
    if not grid_methods or not rows:
        st.info("Choose at least one fast method above and one image.", icon=":material/info:")
    else:
        with guard("Images × methods"):
            panels, skipped = [], []
            for item in [i for i in sel.images if i.label in rows]:
                item_view = model_view_image(handle, item.image, item.digest)
                top = predict_image(handle, item.image, item.digest, topk=1)[0]
                item_results = explain_image(handle, item.image, grid_methods, target, layer)
                for n, m in enumerate(grid_methods):
                    r = item_results[m]
                    head = plots.subtitle(f"{METHODS[m].display_name} · {r.info.get('target_name', top[1])}")
                    title = f"{html.escape(item.label[:40])}<br>{head}" if n == 0 else f"&nbsp;<br>{head}"
                    if r.error is not None:
                        skipped.append(f"{item.label}: {METHODS[m].display_name}")
                        panels.append((title, item_view, None))
                        continue
                    heat = display_map(r)
                    panels.append((title, plots.overlay(item_view, heat, colormap, opacity), heat))
            chart(plots.image_grid(panels, cols=len(grid_methods), height_per_row=230), key="cam_set_grid")
            st.caption("Row = image (its first panel names it), column = method, with the class explained under each "
                       "map; each map is scaled to its own range. Read one method down a column across the set.")
            if skipped:
                st.caption("Not applicable (image shown alone): " + "; ".join(skipped[:6]))

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
