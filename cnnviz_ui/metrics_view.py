"""Evaluation widgets: deletion/insertion AUC beside the CAM grid, the sanity check and the
pointing-game leaderboard. Each metric is long work: a button with Stop, a progress bar, and results
kept in the engine's shared cache (keyed by model, image, layer, target and method)."""
from __future__ import annotations

from typing import Mapping

import streamlit as st

from cnnviz_core import ModelHandle, plots
from cnnviz_core.attribution import METHODS
from cnnviz_core.audit.faithfulness import pointing_tolerance
from cnnviz_core.progress import Progress, report

from .layout import chart
from .progress import run_controls, run_task, show_status, task_state
from .state import Selection, get_engine

SANITY_METHODS = ("gradcam", "guided_backprop", "saliency", "guided_gradcam", "layercam", "eigencam")
POINTING_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "saliency", "guided_backprop")
OURS = ("shapes-cnn", "shapes-cnn-biased")


def _auc_key(handle: ModelHandle, sel: Selection, result, layer: str) -> tuple:
    return ("auc", handle.key, sel.digest, layer if METHODS[result.method].uses_layer else None, result.target,
            result.method)


def auc_controls(handle: ModelHandle, sel: Selection, results: Mapping[str, object], layer: str) -> dict:
    """Deletion/insertion (Petsiuk et al., RISE, BMVC 2018) for the maps in ``results``: a button
    (with Stop) computes the missing curves. Returns ``{method: (deletion, insertion)}`` done so far."""
    from cnnviz_core.metrics import deletion, insertion

    cache = get_engine().results
    keys = {m: _auc_key(handle, sel, r, layer) for m, r in results.items()}
    missing = [m for m, k in keys.items() if k not in cache]
    state = task_state("cam_auc")
    if missing:
        label = f"Deletion/insertion AUC for {len(missing)} map{'s' if len(missing) > 1 else ''}"
        if run_controls("cam_auc", label, help="Deletes (inserts) pixels in the order of the map, 2% at a time, "
                                                 "and tracks the class probability: about 100 forward passes per map."):
            x = handle.preprocess(sel.image)
            step = max(1, handle.input_size ** 2 // 50)
            total = 2 * len(missing)

            def work(progress, cancel) -> None:
                for i, m in enumerate(missing):
                    r, curves = results[m], []
                    for j, curve in enumerate((deletion, insertion)):
                        done = 2 * i + j

                        def inner(p: Progress, done=done, name=curve.__name__) -> None:
                            report(progress, done * p.total + p.step, total * p.total,
                                   f"{METHODS[m].display_name}: {name}")

                        curves.append(curve(handle, x, r.raw, r.target, step=step, batch_size=26,
                                            progress=inner, cancel=cancel))
                    cache.put(keys[m], tuple(curves))

            state = run_task("cam_auc", None, work)
        show_status(state, "AUC computation")
    return {m: cache.get(keys[m]) for m in keys if keys[m] in cache}


def auc_subtitles(curves: Mapping[str, tuple]) -> dict[str, str]:
    return {m: f"deletion {c[0].auc:.3f} · insertion {c[1].auc:.3f}" for m, c in curves.items()}


def auc_curves(curves: Mapping[str, tuple]) -> None:
    """Deletion and insertion curves of every map, one chart each."""
    if not curves:
        return
    with st.expander("Deletion and insertion curves", expanded=False):
        c1, c2 = st.columns(2)
        for col, i, kind, better in ((c1, 0, "Deletion", "lower"), (c2, 1, "Insertion", "higher")):
            lines = {f"{METHODS[m].display_name} ({c[i].auc:.3f})": (c[i].fractions, c[i].probs)
                     for m, c in curves.items()}
            with col:
                chart(plots.curve_figure(lines, title=f"{kind}: {better} AUC is better",
                                         xlabel="fraction of pixels", ylabel="class probability"),
                      key=f"cam_auc_{kind}")


SIDEBAR = "__sidebar__"
PG_SOURCES = ("Generated scenes", "Upload image + mask pairs", "Folder under the data roots")


def _model_picker(sel: Selection, col, key: str) -> ModelHandle:
    """The sidebar's model (ImageNet, uploaded, any) or one of ours, on the sidebar's device."""
    from .services import fixed_model

    options = [SIDEBAR, *OURS]
    if st.session_state.get(key) not in options:
        st.session_state[key] = SIDEBAR
    picked = col.selectbox("Model", options, key=key,
                           format_func=lambda k: f"Sidebar model: {sel.model_name}" if k == SIDEBAR else k)
    if picked != SIDEBAR:
        return fixed_model(picked, sel.device)
    if sel.handle is None:  # not loaded (e.g. waiting for a download): ours meanwhile, said in one line
        col.caption(f"{sel.model_name} is not loaded: using {OURS[0]} until it is.")
        return fixed_model(OURS[0], sel.device)
    return sel.handle


def sanity_check_section(sel: Selection) -> None:
    """Model-parameter randomization cascade (Adebayo et al., NeurIPS 2018) with its curve, on any model."""
    from . import services_metrics as sm
    from .widgets import table_download

    c1, c2 = st.columns(2)
    handle = _model_picker(sel, c1, "app_sanity_model")
    methods = c2.multiselect("Methods", SANITY_METHODS, default=["gradcam", "guided_backprop"],
                             format_func=lambda k: METHODS[k].display_name, key="app_sanity_methods", wrap=True)
    st.caption(f"On the sidebar's image. Cost: {sm.sanity_cost(handle, methods)}")
    params = sm.SanityParams(handle.key, sel.digest, tuple(methods))
    state = task_state("app_sanity")
    if run_controls("app_sanity", "Run the randomization cascade"):
        state = run_task("app_sanity", params,
                         lambda progress, cancel: sm.run_sanity(handle, sel.image, methods, progress, cancel))
    show_status(state, "Sanity check")
    if state.status == "done" and state.result:
        first = next(iter(state.result.values()))
        ticks = ["original"] + [s.layer for s in first]
        curves = {f"{METHODS[m].display_name} (Spearman)": (list(range(len(ticks))), [1.0] + [s.spearman for s in steps])
                  for m, steps in state.result.items()}
        curves.update({f"{METHODS[m].display_name} (SSIM)": (list(range(len(ticks))), [1.0] + [s.ssim for s in steps])
                       for m, steps in state.result.items()})
        chart(plots.curve_figure(curves, title="Similarity to the original map as layers are randomized (top first)",
                                 xlabel="randomized down to", ylabel="similarity", xticks=ticks, height=360),
              key="app_sanity_curve")
        st.caption("A method that passes drops towards 0 as soon as the top layers are randomized; a curve that "
                   "stays high means the map mostly reflects the input image (edges), not what the model learned.")
        table_download(sm.sanity_rows(state.result), key="app_sanity_table", stem="sanity-check")
        if state.params != params:
            st.caption("Settings changed since this run: press the button to update.")


def _pairs(source: str):
    """The image + mask pairs of the chosen source (uploads or a confined folder), and notes."""
    from cnnviz_core import CnnvizError
    from cnnviz_core.paths import DATA_ROOT_ENV, confine, data_roots

    from . import services_metrics as sm
    from .errors import show_error

    if source == PG_SOURCES[1]:
        files = st.file_uploader(
            f"Images and their masks (NAME.png + NAME{sm.MASK_SUFFIX}; any non-zero mask pixel is the object)",
            type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"], accept_multiple_files=True,
            key="app_pg_upload")
        return sm.pairs_from_files([(f.name, f.getvalue()) for f in files or []])
    roots = data_roots()
    folder = st.text_input(
        "Folder (path on the server)", key="app_pg_folder",
        help=f"Only paths under the data roots are read: {', '.join(str(r) for r in roots)} (server setting "
             f"`{DATA_ROOT_ENV}`). Masks NAME{sm.MASK_SUFFIX} beside the images or in a masks/ subfolder.")
    if not folder.strip():
        return [], []
    try:
        return sm.pairs_from_folder(confine(folder.strip(), roots, what="mask folder"))
    except CnnvizError as exc:
        show_error(exc)
        return [], []


def pointing_game_section(sel: Selection = None) -> None:
    """Pointing-game leaderboard (Zhang et al., ECCV 2016) of methods on generated scenes (our models) or
    on the visitor's image + mask pairs (any model)."""
    from cnnviz_core.metrics import pointing_game_table
    from cnnviz_core.scenes import generate_scenes

    from . import services_metrics as sm
    from .state import selection
    from .widgets import export_buttons, csv_bytes, json_bytes

    sel = sel or selection()
    c1, c2 = st.columns([1, 2])
    handle = _model_picker(sel, c1, "app_pg_model")
    every = c2.toggle(f"Every method ({len(METHODS)}, slow ones included)", False, key="app_pg_every",
                      help="Ranks every registered method; those that do not apply to the model are listed, "
                           "not ranked. Perturbation methods take many forwards per scene.")
    methods = list(METHODS) if every else c2.multiselect(
        "Methods", list(METHODS), default=list(POINTING_METHODS), key="app_pg_methods",
        format_func=lambda k: METHODS[k].display_name + (" ⏱" if METHODS[k].long_running else ""), wrap=True)
    sources = ([PG_SOURCES[0]] if sm.scene_classes_match(handle) else []) + list(PG_SOURCES[1:])
    if st.session_state.get("app_pg_source") not in sources:
        st.session_state["app_pg_source"] = sources[0]
    source = st.radio("Data", sources, horizontal=True, key="app_pg_source",
                      help="Generated scenes carry exact masks but only our models know their classes; your own "
                           "image + mask pairs score any model, for its top-1 class of each image.")
    tolerance = pointing_tolerance(handle.input_size)  # the audit's: 15 px at 224 px, scaled, whole pixels
    pairs, notes = [], []
    if source == PG_SOURCES[0]:
        s1, s2 = st.columns(2)
        count = s1.slider("Scenes", 5, 100, 20, step=5, key="app_pg_count")
        objects = s2.radio("Objects per scene", [1, 2], horizontal=True, key="app_pg_objects")
        params = sm.PointingParams(handle.key, tuple(methods), source, count, objects)
        n_maps = count * objects
    else:
        pairs, notes = _pairs(source)
        if notes:
            st.caption("Left out: " + "; ".join(notes[:8]) + (" …" if len(notes) > 8 else ""))
        st.caption(f"{len(pairs)} image + mask pair{'s' if len(pairs) != 1 else ''} ready.")
        params = sm.PointingParams(handle.key, tuple(methods), source, pairs=tuple(p.digest for p in pairs))
        n_maps = len(pairs)
    st.caption(f"Cost: {n_maps} target{'s' if n_maps != 1 else ''} × one shared pass for the {len(methods)} "
               f"methods (a forward and a backward each), plus a forward per image for its top-1 class with "
               f"your masks. Tolerance {tolerance} px at {handle.input_size} px.")
    state = task_state("app_pg")
    if run_controls("app_pg", "Play the pointing game"):
        if source != PG_SOURCES[0] and not pairs:
            st.error("No image + mask pairs yet.", icon=":material/error:")
        else:
            def work(progress, cancel):
                usable = sm.applicable_methods(handle, methods)
                if source == PG_SOURCES[0]:
                    scenes = generate_scenes(params.count, seed=2026, size=handle.input_size, objects=params.objects)
                    return pointing_game_table(handle, usable, scenes, tolerance=tolerance, progress=progress,
                                               cancel=cancel)
                return sm.pointing_on_pairs(handle, usable, pairs, tolerance=tolerance, progress=progress,
                                            cancel=cancel)

            state = run_task("app_pg", params, work)
    show_status(state, "Pointing game")
    if state.status == "done" and state.result:
        left_out = [METHODS[m].display_name for m in getattr(state.params, "methods", ())
                    if m not in {r.method for r in state.result}]
        if left_out:
            st.caption("Not ranked (they do not apply to this model): " + ", ".join(left_out))
        rows = sorted(state.result, key=lambda r: -r.pointing)
        chart(plots.bar_chart([METHODS[r.method].display_name for r in rows], [r.pointing for r in rows],
                              title=f"Pointing accuracy on {rows[0].n} objects", xlabel="hits", fmt=".0%",
                              height=60 + 34 * len(rows)), key="app_pg_bar")
        table = sm.leaderboard_rows(rows)
        st.dataframe([{**r, "pointing": f"{r['pointing']:.0%}", "energy in object mask": f"{r['energy in object mask']:.0%}",
                       "own object > other object": "—" if r["own object > other object"] is None
                       else f"{r['own object > other object']:.0%}"} for r in table],
                     hide_index=True, width="stretch")
        run = state.params
        export_buttons("app_pg", "pointing-leaderboard", csv=lambda: csv_bytes(table), what="Leaderboard",
                       json=lambda: json_bytes({"model": handle.name, "source": getattr(run, "source", None),
                                                "tolerance_px": tolerance, "rows": table}))
        if state.params != params:
            st.caption("Settings changed since this run: press the button to update.")


# ---- the registered metrics beside each map -------------------------------------------------------
def offered_metrics() -> list[str]:
    """Metrics the CAM page can put beside a map: every registered one that needs no object mask."""
    from cnnviz_core.metrics.registry import METRICS

    return [k for k, m in METRICS.items() if "mask" not in m.needs]


def _metric_key(handle: ModelHandle, sel: Selection, result, layer: str, params, metric: str) -> tuple:
    return ("metric", *_auc_key(handle, sel, result, layer), repr(params), metric)


def metric_controls(handle: ModelHandle, sel: Selection, results: Mapping[str, object], layer: str,
                    method_params: Mapping[str, object]) -> dict[str, dict]:
    """The registered metrics (:mod:`cnnviz_core.metrics.registry`: ROAD, average drop, increase in
    confidence, faithfulness correlation, infidelity, max-sensitivity, the MPRT variants, the
    random-logit test ...) for the maps in ``results``: a picker, a button (with Stop) that computes the
    missing values as one long job, and ``{method: {metric: MetricResult}}`` of what is done."""
    from cnnviz_core.metrics.registry import METRICS, evaluate, method_explainer

    keys = offered_metrics()
    chosen = st.multiselect(
        "Metrics beside each map", keys, default=[], key="cam_metrics",
        format_func=lambda k: f"{METRICS[k].display_name} ({METRICS[k].direction}; {METRICS[k].cost})",
        help="Each metric is computed for every map shown, with the map's own method and parameters. "
             + " ".join(f"{m.display_name}: {m.paper.authors} {m.paper.year}." for m in map(METRICS.get, keys)),
        wrap=True)
    if not chosen or not results:
        return {}
    cache = get_engine().results
    params = {m: method_params.get(m) or METHODS[m].params_type() for m in results}
    wanted = {(m, k): _metric_key(handle, sel, r, layer, params[m], k) for m, r in results.items() for k in chosen}
    missing = [mk for mk, key in wanted.items() if key not in cache]
    state = task_state("cam_metrics_job")
    if missing:
        label = f"Compute {len(missing)} metric value{'s' if len(missing) > 1 else ''}"
        if run_controls("cam_metrics_job", label, help="Each metric runs its own forwards (and, for "
                                                         "max-sensitivity, the MPRT variants and the random-logit "
                                                         "test, new explanations): from seconds to minutes."):
            x = handle.preprocess(sel.image)

            def work(progress, cancel) -> None:
                for i, (m, k) in enumerate(missing):
                    r = results[m]

                    def inner(p: Progress, i=i, m=m, k=k) -> None:
                        report(progress, i * p.total + p.step, len(missing) * p.total,
                               f"{METHODS[m].display_name}: {METRICS[k].display_name}")

                    explainer = method_explainer(handle, m, layer=layer if METHODS[m].uses_layer else None,
                                                 **params[m].as_dict())
                    value = evaluate(handle, x, r.scaled, r.target, [k], explain=explainer, progress=inner,
                                     cancel=cancel)[k]
                    cache.put(wanted[m, k], value)

            state = run_task("cam_metrics_job", None, work)
        show_status(state, "Metrics")
    done: dict[str, dict] = {}
    for (m, k), key in wanted.items():
        value = cache.get(key)
        if value is not None:
            done.setdefault(m, {})[k] = value
    return done


def metric_subtitles(values: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """``{method: "ROAD 0.123 · Average drop 0.456"}`` for the grid's panel titles."""
    from cnnviz_core.metrics.registry import METRICS

    return {m: " · ".join(f"{METRICS[k].display_name} {r.value:.3g}" for k, r in row.items())
            for m, row in values.items()}


def metric_rows(values: Mapping[str, Mapping[str, object]]) -> list[dict]:
    """One table row per map: the method, then each metric's value (for the table and its CSV)."""
    from cnnviz_core.metrics.registry import METRICS

    return [{"method": METHODS[m].display_name, **{f"{METRICS[k].display_name} ({METRICS[k].direction})": r.value
                                                   for k, r in row.items()}} for m, row in values.items()]
