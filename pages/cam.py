"""CAM & Grad-CAM: any set of attribution methods side by side, per class and per layer; a share link and
a one-file HTML report of the comparison."""
from __future__ import annotations

import html
import io
import json
from typing import Optional

import numpy as np
import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import plots
from cnnviz_core.attribution import FAMILIES, METHODS
from cnnviz_ui import chart, download_buttons, guard, page_header, page_selection, require_model, run_controls, \
    run_task, show_status, task_state
from cnnviz_ui.compute import explain_image, explain_results, feature_maps, layer_table, model_view, \
    model_view_image, predict, predict_image
from cnnviz_ui.method_params import param_controls, with_shared
from cnnviz_ui.metrics_view import auc_controls, auc_curves, auc_subtitles, metric_controls, metric_rows, \
    metric_subtitles
from cnnviz_ui.report import cam_report
from cnnviz_ui.share import share_box, share_link, upload_note, write_page
from cnnviz_ui.state import session_owner
from cnnviz_ui.user_model import HOOK_FREE_METHODS
from cnnviz_ui.widgets import TOP, method_caption, table_download, target_picker

DEFAULT_METHODS = ["cam", "gradcam", "gradcam++", "layercam", "eigencam", "guided_gradcam"]
SLOW = tuple(k for k, m in METHODS.items() if m.long_running)
#: Methods whose parameters have hand-made controls (ranges, cost per value); the others get controls
#: drawn from their parameter dataclass (cnnviz_ui.method_params).
HAND_DRAWN = {"scorecam", "ablationcam", "smoothgrad", "integrated_gradients", "occlusion"}

page_header(
    "Class activation maps weight the feature maps of a convolution layer to show **where** the network found "
    "evidence for a class. Pick any methods, a layer and a class; hover a map to read its values.",
)
sel = page_selection()
handle = require_model(sel)
hookable = getattr(handle, "hookable", True)
layers = handle.cam_layers if hookable else []
offered = list(METHODS) if hookable else [m for m in METHODS if m in HOOK_FREE_METHODS]
offered.sort(key=lambda k: list(FAMILIES).index(METHODS[k].family))  # grouped by family, registry order within
if not hookable:
    st.info(f"{handle.spec.display_name} is TorchScript, which cannot be hooked: only the methods that need no layer "
            f"are offered ({', '.join(METHODS[m].display_name for m in offered)}).", icon=":material/info:")

# Widgets whose options depend on the model start over when the model changes: assigning their state
# here (before they are drawn) also tells the browser, so no label of the previous model's classes
# or layers is left on screen.
if st.session_state.get("_cam_model") not in (None, handle.identity):
    st.session_state["cam_target"] = TOP
    st.session_state["cam_layer"] = handle.default_layer
    for stale in ("cam_layers", "cam_cls_method", "cam_layer_method", "cam_set_images", "cam_sc_channels",
                  "cam_occ_patch", "cam_occ_stride"):
        st.session_state.pop(stale, None)
st.session_state["_cam_model"] = handle.identity


# Every widget gets its default as its argument (the browser then knows it whenever the widget is drawn
# anew); the session state is only written where a value from a link or from another model does not fit.
def _clamp(key: str, lo: float, hi: float, default: float) -> float:
    """``default``, for the widget's ``value=``; a state value of ``key`` is brought into ``[lo, hi]``."""
    if key in st.session_state:
        value = st.session_state[key]
        try:
            fixed = min(max(type(default)(value), type(default)(lo)), type(default)(hi))
        except (TypeError, ValueError):
            fixed = default
        if fixed != value or type(value) is not type(default):
            st.session_state[key] = fixed
    return default


def _choice(key: str, options, default) -> int:
    """The index of ``default`` in ``options``, for the widget's ``index=``; a state value of ``key``
    that is not an option is replaced by ``default``."""
    options = list(options)
    if key in st.session_state and st.session_state[key] not in options:
        st.session_state[key] = default
    return options.index(default)


defaults = [m for m in DEFAULT_METHODS if m in offered] or offered[:2]
if any(m not in offered for m in st.session_state.get("cam_methods", [])):
    st.session_state["cam_methods"] = [m for m in st.session_state["cam_methods"] if m in offered]

c1, c2, c3 = st.columns([2.2, 1, 1.2])
FAMILY_TAG = {"cam": "CAM", "gradient": "Gradient", "perturbation": "Perturbation", "region": "Regions"}


def method_label(k: str) -> str:
    """``Family · Name (cost) ⏱``: the picker lists the methods grouped by family, with their cost."""
    m = METHODS[k]
    return f"{FAMILY_TAG.get(m.family, m.family)} · {m.display_name} ({m.cost})" + (" ⏱" if k in SLOW else "")


methods = c1.multiselect("Methods", offered, default=defaults, key="cam_methods", format_func=method_label,
                         help="Grouped by family: " + "; ".join(FAMILIES.values()) + ". In brackets: the cost in "
                              "passes of the model. ⏱ = many forward passes: computed when you press *Compute "
                              "slow methods* (their parameters and cost are under *Slow methods*).", wrap=True)
layer = None
if layers:
    start = handle.default_layer if handle.default_layer in layers else layers[0]
    layer = c2.selectbox("Layer", layers, _choice("cam_layer", layers, start), key="cam_layer",
                         help=f"Default: {handle.default_layer} (last spatial layer).")
with c3:
    target = target_picker(handle, sel, key="cam_target")


def param_controls_needed(key: str) -> bool:
    """Whether ``key`` has parameters of its own to draw (beyond the CAM options set for all maps)."""
    from cnnviz_ui.method_params import field_kinds
    return bool(field_kinds(METHODS[key].params_type))


def layer_channels(path: Optional[str]) -> Optional[int]:
    """Channels of ``path``'s output (from the layer table, else its activation), or None."""
    if not path:
        return None
    for row in layer_table(handle):
        if row["path"] == path and row.get("output_shape"):
            return int(row["output_shape"][0])
    try:  # a container module (e.g. a fusion block): one cached forward tells
        return int(feature_maps(handle, sel, [path])[path].shape[0])
    except Exception:  # noqa: BLE001 - only the cost caption needs it
        return None


def occlusion_windows(size: int, patch: int, stride: int) -> int:
    """How many occluded images the occlusion map takes (the engine's window placement)."""
    starts = list(range(0, size - patch + 1, stride))
    if starts and starts[-1] != size - patch:
        starts.append(size - patch)
    return len(starts) ** 2


options: dict = {}  # typed parameters of the slow methods, by method key
costs: dict[str, str] = {}  # each chosen slow method's cost in passes, for the captions and the report
chosen_slow = [m for m in methods if m in SLOW]
if chosen_slow:
    channels = layer_channels(layer)
    size = handle.input_size
    with st.expander("Slow methods: parameters and cost", expanded=True, icon=":material/timer:"):
        st.caption("Cost in passes of the model at batch 1 (a forward, or a forward + backward); the engine "
                   "batches them, 16 at a time.")
        if "scorecam" in chosen_slow:
            exact_label = f"All {channels} channels (exact)" if channels else "All channels (exact)"
            mode = st.radio("Score-CAM channels", ["topk", "exact"], _choice("cam_sc_mode", ("topk", "exact"), "topk"),
                            key="cam_sc_mode", horizontal=True,
                            format_func=lambda v: exact_label if v == "exact" else "Top-k by mean activation "
                                                                                    "(approximation)")
            k = None
            if mode == "topk" and (channels is None or channels > 8):
                top = channels or 512
                k = st.slider("Score-CAM: channels used (highest mean activation)", 8, top,
                              _clamp("cam_sc_channels", 8, top, min(64, top)), step=8, key="cam_sc_channels")
            options["scorecam"] = METHODS["scorecam"].params_type(channels=k)
            n = k or channels
            costs["scorecam"] = (f"{METHODS['scorecam'].cost}: {n} masked forwards" if n
                                 else METHODS["scorecam"].cost) + ("" if k is None else f" (top {k} of "
                                                                   f"{channels or 'C'} channels)")
            st.caption(f"Score-CAM cost — {costs['scorecam']}.")
        if "ablationcam" in chosen_slow:
            costs["ablationcam"] = METHODS["ablationcam"].cost + (f": {channels} forwards of the network's tail"
                                                                   if channels else "")
            st.caption(f"Ablation-CAM cost — {costs['ablationcam']} (no parameters).")
        if "smoothgrad" in chosen_slow:
            s1, s2 = st.columns(2)
            samples = s1.slider("SmoothGrad: noisy samples", 5, 100, _clamp("cam_sg_samples", 5, 100, 20),
                                key="cam_sg_samples")
            noise = s2.slider("SmoothGrad: noise (std as a fraction of the input range)", 0.0, 0.5,
                              _clamp("cam_sg_noise", 0.0, 0.5, 0.15), step=0.01, key="cam_sg_noise")
            options["smoothgrad"] = METHODS["smoothgrad"].params_type(samples=samples, noise=noise)
            costs["smoothgrad"] = f"{METHODS['smoothgrad'].cost}: {samples} forward + backward passes"
            st.caption(f"SmoothGrad cost — {costs['smoothgrad']}.")
        if "integrated_gradients" in chosen_slow:
            i1, i2 = st.columns(2)
            steps = i1.slider("Integrated Gradients: steps", 8, 128, _clamp("cam_ig_steps", 8, 128, 32), step=8,
                              key="cam_ig_steps")
            baseline = i2.radio("Integrated Gradients: baseline", ["black", "zero"],
                                _choice("cam_ig_baseline", ("black", "zero"), "black"), key="cam_ig_baseline",
                                horizontal=True, format_func=lambda b: {"black": "black image",
                                                                        "zero": "zero (the mean colour)"}[b])
            options["integrated_gradients"] = METHODS["integrated_gradients"].params_type(steps=steps,
                                                                                         baseline=baseline)
            costs["integrated_gradients"] = f"{METHODS['integrated_gradients'].cost}: {steps} forward + backward passes"
            st.caption(f"Integrated Gradients cost — {costs['integrated_gradients']}.")
        if "occlusion" in chosen_slow:
            o1, o2 = st.columns(2)
            auto_patch = max(2, round(size / 7))
            patch = o1.slider("Occlusion: patch (px)", 2, size // 2, _clamp("cam_occ_patch", 2, size // 2, auto_patch),
                              key="cam_occ_patch")
            stride = o2.slider("Occlusion: stride (px)", 1, size // 2,
                               _clamp("cam_occ_stride", 1, size // 2, max(1, auto_patch // 2)), key="cam_occ_stride")
            options["occlusion"] = METHODS["occlusion"].params_type(patch=patch, stride=stride)
            costs["occlusion"] = (f"{METHODS['occlusion'].cost}: {occlusion_windows(size, patch, stride)} occluded "
                                  f"forwards at {size} px")
            st.caption(f"Occlusion cost — {costs['occlusion']}.")
        for m in chosen_slow:
            if m not in HAND_DRAWN:
                costs[m] = METHODS[m].cost
                st.caption(f"{METHODS[m].display_name} cost — {costs[m]}"
                           + (" (parameters under *Method parameters*)." if param_controls_needed(m) else "."))

own_params = [m for m in methods if m not in HAND_DRAWN and param_controls_needed(m)] if methods else []
if own_params:
    with st.expander("Method parameters", expanded=False, icon=":material/tune:"):
        st.caption("Each method's own parameters, checked by the engine; a refused value keeps the defaults.")
        for m in own_params:
            typed = param_controls(METHODS[m], f"cam_p_{m}")
            if typed is not None:
                options[m] = typed
cam_chosen = [m for m in methods if METHODS[m].family == "cam"]
if cam_chosen:
    sm1, sm2 = st.columns(2)
    aug = sm1.toggle("CAM maps: test-time augmentation smoothing", False, key="cam_aug_smooth",
                     help="aug_smooth: each CAM map averaged over flips and scales of the image (6 passes each).")
    eig = sm2.toggle("CAM maps: principal-component smoothing", False, key="cam_eigen_smooth",
                     help="eigen_smooth: the first principal component of the weighted activations instead of "
                          "their sum (less noise).")
    if aug or eig:
        for m in cam_chosen:
            options[m] = with_shared(options.get(m) or METHODS[m].params_type(), aug_smooth=aug, eigen_smooth=eig)
fast = [m for m in methods if m not in SLOW]
slow_key = (handle.key, sel.digest, layer, target, tuple(chosen_slow),
            tuple(sorted((k, v) for k, v in options.items() if k in chosen_slow)))
slow_state = task_state("cam_slow")
results: dict = {}
with guard("Attribution"):
    if fast:
        results.update(explain_results(handle, sel, fast, target, layer,
                                       options={k: v for k, v in options.items() if k in fast}))
    if chosen_slow:
        slow_names = ", ".join(METHODS[m].display_name for m in chosen_slow)
        if run_controls("cam_slow", f"Compute slow methods ({slow_names})"):
            slow_state = run_task("cam_slow", slow_key, lambda progress, cancel: explain_results(
                handle, sel, chosen_slow, target, layer, progress=progress, cancel=cancel, options=options))
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

VIEWS = ["Methods side by side", "Per class", "Per layer", "Images × methods", "Concepts (DFF)"]
shown_views = (VIEWS[:2] + ([VIEWS[2]] if layers else []) + ([VIEWS[3]] if len(sel.images) > 1 else [])
               + ([VIEWS[4]] if layers and "dff" in METHODS else []))


@st.cache_resource(show_spinner=False, max_entries=48)
def _grid_figure(_view: np.ndarray, _maps: dict, key: tuple, colormap: str, opacity: float, shared: bool,
                 cols: int, subtitles: tuple):
    """The overlay grid, built once per (maps, display settings) and shared as the same object (a
    ``go.Figure`` goes to the browser without a second validation; nobody mutates it). ``key`` names
    the maps: model, image, methods, layer, target, parameters, and the session for uploads."""
    return plots.overlay_grid(_view, _maps, colormap=colormap, opacity=opacity, shared_scale=shared, cols=cols,
                              subtitles=dict(subtitles))


@st.fragment
def comparison() -> None:
    """Display settings, the grid and its downloads, the share link: changing a display setting reruns
    only this part (no sidebar, no engine call)."""
    view = model_view(handle, sel)
    d1, d2, d3, d4 = st.columns(4)
    colormap = d1.selectbox("Colormap", plots.COLORMAPS, _choice("cam_cmap", plots.COLORMAPS, plots.COLORMAPS[0]),
                            key="cam_cmap")
    opacity = d2.slider("Opacity", 0.0, 1.0, _clamp("cam_opacity", 0.0, 1.0, 0.5), step=0.05, key="cam_opacity")
    shared = d3.toggle("One colour scale for the grid", False, key="cam_shared",
                       help="On: raw values on one scale (compare magnitudes). Off: each map scaled to its own range.")
    ncols = d4.slider("Columns", 2, 6, _clamp("cam_cols", 2, 6, 4), key="cam_cols")

    _choice("cam_view", shown_views, VIEWS[0])
    compare = st.segmented_control("Compare", shown_views, default=VIEWS[0], key="cam_view",
                                   help="Images × methods appears when the sidebar holds several uploaded images.") \
        or VIEWS[0]
    if compare == VIEWS[0]:
        side_by_side(view, colormap, opacity, shared, ncols)
    elif compare == VIEWS[1]:
        per_class(view, colormap, opacity, shared)
    elif compare == VIEWS[3]:
        images_by_methods(colormap, opacity)
    elif compare == VIEWS[4]:
        concepts_view(view, opacity)
    else:
        per_layer(view, colormap, opacity, shared)

    write_page("cam")
    s1, s2 = st.columns([1, 4], vertical_alignment="center")
    with s1:
        share_box(sel)
    note = upload_note(sel)
    if note:
        s2.caption(note)


def _method_params(key: str) -> dict:
    given = options.get(key)
    return given.as_dict() if given is not None else dict(METHODS[key].params)


def side_by_side(view: np.ndarray, colormap: str, opacity: float, shared: bool, ncols: int) -> None:
    if not ok:
        st.info("Choose at least one method that applies to this model.")
        if methods:
            st.markdown(method_caption(methods))
        return
    first = next(iter(ok.values()))
    st.markdown(f"Explaining **{first.info.get('target_name', first.target)}**"
                + (f" at layer `{layer}`." if layer else " (input-gradient methods, no layer)."))
    maps = {METHODS[k].display_name: display_map(r) for k, r in ok.items()}
    curves = auc_controls(handle, sel, ok, layer)
    measured = metric_controls(handle, sel, ok, layer, options)
    aucs, more = auc_subtitles(curves), metric_subtitles(measured)
    lines = {k: " · ".join(t for t in (aucs.get(k), more.get(k)) if t) for k in ok}
    subtitles = tuple((METHODS[k].display_name, lines[k]) for k in ok if lines[k])
    key = (handle.key, sel.digest, layer, first.target, tuple(ok), tuple(sorted(options.items())),
           session_owner() if sel.images or sel.user_model else None)
    chart(_grid_figure(view, maps, key, colormap, opacity, shared, ncols, subtitles), key="cam_grid")

    def panels() -> dict:
        return {name: plots.overlay(view, m, colormap, opacity) for name, m in maps.items()}

    def npz() -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, image=view, **{k: r.raw for k, r in ok.items()})
        return buf.getvalue()

    def as_json() -> bytes:
        return json.dumps({"model": handle.name, "layer": layer, "target": first.target,
                           "target_name": first.info.get("target_name"),
                           "maps": {k: np.round(r.raw.astype(float), 5).tolist() for k, r in ok.items()}}).encode()

    link = share_link()
    preds = predict(handle, sel, topk=min(5, handle.num_classes))

    def report() -> str:
        return cam_report(handle, sel, view, ok, display_map, params={k: _method_params(k) for k in ok},
                          costs={k: costs.get(k, METHODS[k].cost) for k in ok}, curves=curves, layer=layer,
                          predictions=preds, colormap=colormap, opacity=opacity, shared_scale=shared, link=link,
                          metrics={k: {name: v for name, v in row.items() if name != "method"}
                                   for k, row in zip(measured, measured_rows)})

    auc_curves(curves)
    measured_rows = metric_rows(measured)
    if measured_rows:
        st.dataframe(measured_rows, hide_index=True, width="stretch")
        table_download(measured_rows, key="cam_metrics_table", stem="cam-metrics")
    download_buttons([
        ("Report (HTML)", report, "cnnviz-cam-report.html", "text/html"),
        ("Grid (PNG)", lambda: plots.grid_png(panels(), cols=ncols), "cnnviz-cam-grid.png", "image/png"),
        ("Maps (NumPy .npz)", npz, "cnnviz-cam-maps.npz", "application/octet-stream"),
        ("Maps (JSON)", as_json, "cnnviz-cam-maps.json", "application/json"),
    ], key="cam")
    st.caption("The report is one HTML file that opens offline: the maps with their methods, parameters and "
               "metrics, the prediction, and the model's and image's hashes.")
    st.markdown(method_caption(methods))


def per_class(view: np.ndarray, colormap: str, opacity: float, shared: bool) -> None:
    usable = [m for m in ok] or ["gradcam"]
    k1, k2 = st.columns([2, 1])
    m_cls = k1.selectbox("Method", usable, _choice("cam_cls_method", usable, usable[0]),
                         format_func=lambda k: METHODS[k].display_name, key="cam_cls_method")
    k = k2.slider("Top-k classes", 2, min(6, handle.num_classes), min(4, handle.num_classes), key="cam_cls_k")
    with guard("Per-class comparison"):
        preds = predict(handle, sel, topk=k)
        per_cls = {}
        for idx, name, prob in preds:
            r = explain_results(handle, sel, [m_cls], idx, layer)[m_cls]
            if r.error is None:
                per_cls[f"{name} ({prob:.0%})"] = display_map(r)
        if per_cls:
            chart(plots.overlay_grid(view, per_cls, colormap=colormap, opacity=opacity, shared_scale=shared,
                                     cols=k), key="cam_classes")
            st.caption("A class-discriminative method lights different regions for different classes; "
                       "Eigen-CAM and other class-agnostic maps look the same in every column.")


def images_by_methods(colormap: str, opacity: float) -> None:
    set_labels = [item.label for item in sel.images]
    g1, g2 = st.columns([3, 1])
    rows = g1.multiselect("Images (one row each)", set_labels, default=set_labels[:6], max_selections=12,
                          key="cam_set_images", wrap=True)
    grid_methods = [m for m in methods if m not in SLOW][:6]
    g2.caption(f"Columns: the fast methods chosen above ({len(grid_methods)}, at most 6). Class: "
               + ("each image's own top prediction." if target is None else f"{handle.class_name(target)}."))
    if not grid_methods or not rows:
        st.info("Choose at least one fast method above and one image.", icon=":material/info:")
        return
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


def concepts_view(view: np.ndarray, opacity: float) -> None:
    """Deep Feature Factorization (Collins et al. 2018) at the chosen layer: the concepts as colours over
    the image, each concept's own map titled with its top classes."""
    f1, f2 = st.columns([1, 3])
    k = f1.slider("Concepts", 2, 8, _clamp("cam_dff_k", 2, 8, 4), key="cam_dff_k")
    f2.caption(f"{METHODS['dff'].display_name}: non-negative matrix factorization of the activations at "
               f"`{layer}` into {k} concepts; each concept's embedding goes through the rest of the network to "
               f"name its top classes. Cost: {METHODS['dff'].cost}.")
    with guard("Concepts"):
        r = explain_results(handle, sel, ["dff"], target, layer,
                            options={"dff": METHODS["dff"].params_type(concepts=k)})["dff"]
        if r.error is not None:
            st.info(r.error, icon=":material/info:")
            return
        concept_maps, concepts = r.info["concept_maps"], r.info["concepts"]
        names = [", ".join(f"{n} {p:.0%}" for n, p in zip(c["names"], c["scores"])) for c in concepts]
        combined = plots.concept_overlay(view, concept_maps, opacity=max(opacity, 0.3))
        panels = [("All concepts", combined, None)]
        for j, (m, title) in enumerate(zip(concept_maps, names)):
            colour = plots.CONCEPT_COLOURS[j % len(plots.CONCEPT_COLOURS)]
            swatch = f"<span style='color:rgb({colour[0]},{colour[1]},{colour[2]})'>■</span>"
            panels.append((f"{swatch} Concept {j + 1}<br>{plots.subtitle(html.escape(title))}",
                           _single_concept(view, m, j, opacity), None))
        chart(plots.image_grid(panels, cols=min(5, len(panels)), height_per_row=250, encoding="jpeg"),
              key="cam_dff_grid")
        rows = [{"concept": j + 1, "top classes": t, "score for the target": float(c["target_score"])}
                for j, (t, c) in enumerate(zip(names, concepts))]
        st.dataframe(rows, hide_index=True, width="stretch")
        table_download(rows, key="cam_dff_table", stem="dff-concepts")
        st.caption(f"Concept {int(r.info['concept']) + 1} is the one the classifier ties most to "
                   f"{r.info.get('target_name', 'the target')}: it is the map the comparison grid shows for DFF.")


def _single_concept(view: np.ndarray, heat: np.ndarray, j: int, opacity: float) -> np.ndarray:
    """One concept's map in its own colour (the others left out)."""
    maps = np.zeros((j + 1, *heat.shape), np.float32)
    maps[j] = heat
    return plots.concept_overlay(view, maps, opacity=opacity)


def per_layer(view: np.ndarray, colormap: str, opacity: float, shared: bool) -> None:
    cam_like = [m for m in ok if METHODS[m].uses_layer] or ["gradcam"]
    l1, l2 = st.columns([1, 2])
    m_layer = l1.selectbox("Method", cam_like,
                           _choice("cam_layer_method", cam_like, "gradcam" if "gradcam" in cam_like else cam_like[0]),
                           format_func=lambda k: METHODS[k].display_name, key="cam_layer_method")
    default_layers = list(dict.fromkeys(handle.conv_layers[-4:-1] + [handle.default_layer]))
    if any(x not in layers for x in st.session_state.get("cam_layers", [])):
        st.session_state["cam_layers"] = [x for x in st.session_state["cam_layers"] if x in layers][:6]
    chosen_layers = l2.multiselect("Layers", layers, default=[x for x in default_layers if x in layers],
                                   key="cam_layers", max_selections=6, wrap=True)
    with guard("Per-layer comparison"):
        per_lay, skipped = {}, []
        for path in chosen_layers:
            r = explain_results(handle, sel, [m_layer], target, path)[m_layer]
            if r.error is None:
                per_lay[path] = display_map(r)
            else:
                skipped.append(f"{path} ({r.error})")
        if skipped:
            st.caption("Not applicable: " + "; ".join(skipped))
        if per_lay:
            chart(plots.overlay_grid(view, per_lay, colormap=colormap, opacity=opacity, shared_scale=shared,
                                     cols=min(6, len(per_lay))), key="cam_layers_grid")
            st.caption("Earlier layers have finer resolution but less class-specific features; the last "
                       "convolutional layer is the usual compromise (Selvaraju et al. 2017, Sec. 3).")


comparison()
