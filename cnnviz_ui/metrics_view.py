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
from .state import Selection, get_engine, load_available

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


def sanity_check_section(sel: Selection) -> None:
    """Model-parameter randomization cascade (Adebayo et al., NeurIPS 2018) with its curve."""
    from cnnviz_core.metrics import randomization_check

    c1, c2 = st.columns(2)
    model_name = c1.selectbox("Model", OURS, key="app_sanity_model")
    methods = c2.multiselect("Methods", SANITY_METHODS, default=["gradcam", "guided_backprop"],
                             format_func=lambda k: METHODS[k].display_name, key="app_sanity_methods")
    handle = load_available(model_name)
    params = (handle.key, sel.digest, tuple(methods))
    state = task_state("app_sanity")
    if run_controls("app_sanity", "Run the randomization cascade"):
        x = handle.preprocess(sel.image)

        def work(progress, cancel):
            out = {}
            for i, m in enumerate(methods):
                def step(p: Progress, i=i) -> None:
                    report(progress, i * p.total + p.step, len(methods) * p.total, f"{METHODS[m].display_name}: "
                           f"{p.message}")
                out[m] = randomization_check(handle, x, m, progress=step, cancel=cancel)
            return out

        state = run_task("app_sanity", params, work)
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
        if state.params != params:
            st.caption("Settings changed since this run: press the button to update.")


def pointing_game_section() -> None:
    """Pointing-game leaderboard (Zhang et al., ECCV 2016) of methods on generated scenes."""
    from cnnviz_core.metrics import pointing_game_table
    from cnnviz_core.scenes import generate_scenes

    c1, c2, c3, c4 = st.columns([1, 2, 1, 1])
    model_name = c1.selectbox("Model", OURS, key="app_pg_model")
    methods = c2.multiselect("Methods", list(POINTING_METHODS), default=list(POINTING_METHODS),
                             format_func=lambda k: METHODS[k].display_name, key="app_pg_methods")
    count = c3.slider("Scenes", 5, 100, 20, step=5, key="app_pg_count")
    objects = c4.radio("Objects per scene", [1, 2], horizontal=True, key="app_pg_objects")
    handle = load_available(model_name)
    tolerance = pointing_tolerance(handle.input_size)  # the audit's: 15 px at 224 px, scaled, whole pixels
    params = (handle.key, tuple(methods), count, objects)
    state = task_state("app_pg")
    if run_controls("app_pg", "Play the pointing game"):
        def work(progress, cancel):
            scenes = generate_scenes(count, seed=2026, size=handle.input_size, objects=objects)
            return pointing_game_table(handle, methods, scenes, tolerance=tolerance, progress=progress, cancel=cancel)

        state = run_task("app_pg", params, work)
    show_status(state, "Pointing game")
    if state.status == "done" and state.result:
        rows = sorted(state.result, key=lambda r: -r.pointing)
        chart(plots.bar_chart([METHODS[r.method].display_name for r in rows], [r.pointing for r in rows],
                              title=f"Pointing accuracy on {rows[0].n} objects", xlabel="hits", fmt=".0%",
                              height=60 + 34 * len(rows)), key="app_pg_bar")
        st.dataframe([{"method": METHODS[r.method].display_name, "pointing": f"{r.pointing:.0%}",
                       "energy in object mask": f"{r.energy:.0%}",
                       "own object > other object": "—" if r.energy_wins != r.energy_wins else f"{r.energy_wins:.0%}",
                       "class-discriminative": "yes" if r.class_discriminative else "no"} for r in rows],
                     hide_index=True, width="stretch")
        if state.params != params:
            st.caption("Settings changed since this run: press the button to update.")

