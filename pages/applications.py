"""Applications: debugging a shortcut, sanity checks, the pointing game, two models side by side."""
from __future__ import annotations

import html
import importlib.util

import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import CnnvizError, entries, plots
from cnnviz_core.attribution import CAM_METHODS, METHODS
from cnnviz_core.paths import DATA_ROOT_ENV, confine, data_roots
from cnnviz_core.scenes import CLASSES
from cnnviz_ui import chart, guard, page_header, page_selection, show_error
from cnnviz_ui.compute import explain_image, model_view, predict_image
from cnnviz_ui.compute import scene as make_scene
from cnnviz_ui.metrics_view import pointing_game_section, sanity_check_section
from cnnviz_ui.set_audit_view import audit_uploaded_set
from cnnviz_ui import services as svc
from cnnviz_ui.widgets import export_buttons, grid_png_bytes, keep_in

page_header(
    "What explanations are good for: catching a model that learned a shortcut, checking that an explanation "
    "depends on the model at all, and scoring localisation against ground truth.",
)

sel = page_selection()

# ---- 1. model debugging ---------------------------------------------------------------------------
st.subheader("Debugging a shortcut: shapes-cnn vs shapes-cnn-biased")
st.markdown(
    "Both networks are built from the same four conv stages. The *biased* one was trained on scenes whose top-left **corner tag** "
    "colour always matched the shape's class, so it could get every training label right by reading the tag. "
    "With a *shuffled* tag (a colour that encodes another class), Grad-CAM shows where each model looks."
)
c1, c2, c3 = st.columns(3)
seed = int(c1.number_input("Scene seed", 0, 10_000, 7, key="app_seed"))
count = c2.slider("Scenes", 1, 4, 3, key="app_count")
tag = c3.radio("Corner tag", ["shuffle", "match", "none"], horizontal=True, key="app_tag",
               help="shuffle: the tag encodes a wrong class; match: the true class; none: no tag.")


with guard("Shortcut comparison"):
    handles = {name: svc.fixed_model(name, sel.device) for name in ("shapes-cnn", "shapes-cnn-biased")}
    panels: list = []
    for i in range(count):
        scene, image, digest = make_scene(seed, i, tag)
        truth = scene.objects[0].class_name
        tag_name = CLASSES[scene.tag_class] if scene.tag_class is not None else "no tag"
        panels.append((f"scene {i}: {truth}<br>{plots.subtitle(f'tag says {tag_name}')}", scene.image, None))
        for name, handle in handles.items():
            top = predict_image(handle, image, digest, topk=1)[0]
            result = explain_image(handle, image, ["gradcam"], None, handle.default_layer)["gradcam"]
            panels.append((f"{name}<br>{plots.subtitle(f'predicts {top[1]} ({top[2]:.0%})')}",
                           plots.overlay(scene.image, result.scaled, "Jet", 0.5), result.scaled))
    chart(plots.image_grid(panels, cols=3, height_per_row=240), key="app_shortcut")
    export_buttons("app_shortcut", "shortcut-gradcam",
                   png=lambda: grid_png_bytes({f"{i}: {t.split('<br>')[0]}": img for i, (t, img, _) in enumerate(panels)},
                                              cols=3))
    labels = {h.weights_label for h in handles.values()}
    if any("random" in lab for lab in labels):
        st.warning("The bundled weights are not available here, so both models run with random weights "
                   "and the comparison is not meaningful.", icon=":material/warning:")
    else:
        st.caption("Grad-CAM (Selvaraju et al. 2017) of each model's top class at its default CAM layer. A model that "
                   "learned the shortcut lights the corner tag and follows its colour, not the shape.")

# ---- 2. sanity check ------------------------------------------------------------------------------
st.subheader("Sanity check: model parameter randomization")
st.markdown(
    "Adebayo et al. (*Sanity Checks for Saliency Maps*, NeurIPS 2018): re-initialise the layers from the top "
    "down; a faithful explanation must change as the weights it depends on are destroyed. A method whose map "
    "stays similar is showing the image, not the model."
)
sanity_check_section(sel)

# ---- 3. pointing game -----------------------------------------------------------------------------
st.subheader("Pointing game: generated scenes or your own masks")
st.markdown(
    "Zhang et al. (*Top-down Neural Attention by Excitation Backprop*, ECCV 2016): a hit when the map's maximum "
    "falls on the object (within 15 px at 224 px resolution, as in TorchRay, scaled to the input size). Our scenes "
    "come with exact masks, so every method can be scored without human labels; for any other model (ImageNet, "
    "yours) bring image + mask pairs, uploaded or in a folder on the server."
)
pointing_game_section(sel)

# ---- 4. two models side by side -------------------------------------------------------------------
st.subheader("Two models, one image")
names = [e.name for e in entries()]
m1, m2, m3 = st.columns(3)
keep_in("app_model_a", names, "shapes-cnn")
keep_in("app_model_b", names, "shapes-cnn-biased")
model_a = m1.selectbox("Model A", names, key="app_model_a")
model_b = m2.selectbox("Model B", names, key="app_model_b")
method = m3.selectbox("Method", [k for k in CAM_METHODS], format_func=lambda k: METHODS[k].display_name,
                      index=list(CAM_METHODS).index("gradcam"), key="app_method")
cols = st.columns(2)
for i, (col, name) in enumerate(zip(cols, (model_a, model_b))):
    with col, guard(name):
        handle = svc.fixed_model(name, sel.device)
        view = model_view(handle, sel)
        result = explain_image(handle, sel.image, [method], None, handle.default_layer)[method]
        if result.error:
            st.warning(f"{name}: {result.error}", icon=":material/info:")
            continue
        preds = predict_image(handle, sel.image, sel.digest, topk=3)
        chart(plots.overlay_grid(view, {f"{name}: {METHODS[method].display_name}": result.scaled},
                                 cols=1, height_per_row=360), key=f"app_pair_{i}")
        # Class names (a user's labels file), weights labels and layer names are escaped: this is HTML.
        st.markdown(" · ".join(f"**{html.escape(str(n))}** {p:.0%}" for _, n, p in preds)
                    + f"  \n<small>{html.escape(handle.weights_label)}, "
                    f"layer <code>{html.escape(handle.default_layer)}</code></small>", unsafe_allow_html=True)

# ---- 5. audit results (rendering owned by cnnviz_ui.audit_view) ---------------------------------
if importlib.util.find_spec("cnnviz_ui.audit_view") is not None:
    from cnnviz_ui.audit_view import render_audit_results

    st.subheader("Audit results")
    st.markdown("Open the results of a dataset audit (`python -m cnnviz_core audit ...`): which method is most "
                "faithful on your images, per class, and where it fails.")
    audit_uploaded_set(sel)
    roots = data_roots()
    roots_text = ", ".join(f"`{r}`" for r in roots)
    a1, a2 = st.columns(2)
    folder = a1.text_input(
        "Results folder or Parquet file (path on the server)", key="app_audit_path",
        help=f"Only paths under the data roots are read: {roots_text} (server setting `{DATA_ROOT_ENV}`). "
             "A relative path starts at the first root.")
    a1.caption(f"Read only under {roots_text}.")
    upload = a2.file_uploader("…or upload a results Parquet file", type=["parquet"], key="app_audit_upload")
    source = None
    if upload is not None:
        source = upload
    elif folder.strip():
        try:
            source = confine(folder.strip(), roots, what="results path")
        except CnnvizError as exc:
            show_error(exc)
    if source is not None:
        with guard("Audit results"):
            render_audit_results(source)
