"""CNN basics: the selected image through the selected model, stage by stage."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import plots
from cnnviz_ui import chart, guard, page_header, page_selection, require_model
from cnnviz_ui import services as svc
from cnnviz_ui.compute import feature_maps, layer_table, model_view, predict
from cnnviz_ui.widgets import (export_buttons, fits_page, grid_png_bytes, json_bytes, keep_in,
                               map_panels, npz_bytes, reset_on_model_change, table_download)

page_header(
    "A convolutional network turns pixels into a class in a few repeated stages: **convolution** (learned "
    "local filters), **ReLU** (keep positive responses), **pooling** (shrink the map, grow the receptive "
    "field) and finally a **fully connected** classifier. Follow the selected image through the selected model.",
)
sel = page_selection()
handle = require_model(sel)
reset_on_model_change(handle, "basics_conv")

left, right = st.columns([1, 1.3])
with left:
    chart(plots.image_figure(model_view(handle, sel), title=f"What the model sees ({handle.input_size}×{handle.input_size})"),
          key="basics_input")
with right:
    with guard("Prediction"):
        preds = predict(handle, sel, topk=min(5, handle.num_classes))
        head = "independent sigmoid per class (multi-label)" if handle.spec.head == "multilabel" else "softmax"
        chart(plots.topk_bar(preds, title=f"Top-{len(preds)} — {head}"), key="basics_top5")
        st.markdown(f"Prediction: **{preds[0][1]}** ({preds[0][2]:.1%}).")
        export_buttons("basics_top5", "prediction", what="Top-5",
                       json=lambda: json_bytes({"model": handle.name, "image": sel.image_label, "head": head,
                                                "top": [{"index": i, "class": n, "probability": p}
                                                        for i, n, p in preds]}))

if not fits_page(handle, ["hooks"]):
    st.stop()  # the prediction above still works; the stages need layer activations

rows: list[dict] = []
with guard("Layer table"):
    rows = layer_table(handle)

st.subheader("Stage by stage")
labels = svc.conv_choices(rows)
convs = list(labels)
if convs:
    c1, c2, c3 = st.columns([2, 1, 1])
    keep_in("basics_conv", convs)
    conv_i = c1.selectbox("Convolution layer", convs, format_func=lambda i: labels.get(i, str(i)), key="basics_conv")
    n_show = c2.slider("Channels shown", 4, 32, 16, step=4, key="basics_n")
    shared = c3.toggle("One colour scale per stage", value=False, key="basics_shared",
                       help="Off: each channel scaled alone (pattern). On: one scale per grid (which channels fire most).")
    stages = svc.conv_stage(rows, conv_i)
    with guard("Feature maps"):
        maps = feature_maps(handle, sel, [s.path for s in stages])
        order = svc.ranked_channels(maps[stages[0].path], n_show)
        names = [f"ch {c}" for c in order]
        tabs = st.tabs([f"{s.name}: {s.path}" for s in stages])
        for tab, stage in zip(tabs, stages):
            row, fmap = stage.row, maps[stage.path]
            with tab:
                shape = "×".join(str(s) for s in row["output_shape"])
                if stage.name == "Convolution":
                    st.caption(f"Each of the {row['output_shape'][0]} filters slides a {row['kernel']}×{row['kernel']} "
                               f"window (stride {row['stride']}) over its input: output {shape}, receptive field "
                               f"{row['rf']} px. Showing the {len(order)} channels with the highest mean response.")
                elif stage.name == "ReLU":
                    zero = float((fmap <= 0).mean())
                    st.caption(f"ReLU keeps positive responses and zeroes the rest: {zero:.0%} of the values are now 0 "
                               "(Nair & Hinton 2010; Krizhevsky et al. 2012).")
                else:
                    st.caption(f"{row['type']} (window {row['kernel'] or 'adaptive'}, stride {row['stride'] or '–'}) "
                               f"keeps the strongest response per window: output {shape}, receptive field "
                               f"{row['rf']} px, one step = {row['jump']} input pixels.")
                chart(plots.feature_map_grid(fmap[order], names, cols=8, shared_scale=shared,
                                             title=f"{row['path']} — {shape}"), key=f"basics_grid_{stage.name}")
        st.markdown("**Download the stage**")
        export_buttons(
            "basics_stage", f"stage-{stages[0].path}",
            png=lambda: grid_png_bytes({f"{s.name} {name}": panel for s in stages for name, panel in
                                        map_panels(maps[s.path][order], names, shared=shared).items()}, cols=8),
            npz=lambda: npz_bytes({"image": model_view(handle, sel), "shown_channels": order,
                                   **{f"{s.name}_{s.path}": maps[s.path] for s in stages}}),
            json=lambda: json_bytes({"model": handle.name, "stages": [{"name": s.name, "layer": s.path} for s in stages],
                                     "channels": order, "maps": {s.name: maps[s.path][order] for s in stages}}))
        st.caption("PNG: one row per stage (convolution, ReLU, pooling), the channels shown above; NumPy: every "
                   "channel of each stage.")
else:
    st.info("This model has no convolution layers to show.")

st.subheader("Fully connected classifier")
fc = svc.classifier(rows)
if fc is not None:
    last, before = fc.last, fc.before
    st.markdown(
        f"The last layer **{last['path']}** is fully connected: each class score (logit) is a weighted sum of all "
        f"{last['macs'] // max(1, last['output_shape'][0]):,} inputs ({last['params']:,} parameters)."
        + (" Global average pooling before it turns each channel into one number, its mean response — which "
           "is what makes CAM exact (Zhou et al. 2016)." if fc.gap else "")
    )
    with guard("Classifier"):
        paths = [last["path"]] + ([before["path"]] if before is not None else [])
        outs = feature_maps(handle, sel, paths)
        logits = outs[last["path"]].reshape(-1)
        top = np.argsort(-logits, kind="stable")[:10]
        class_names = handle.class_names
        f1, f2 = st.columns(2)
        if before is not None:
            pooled = outs[before["path"]].reshape(-1)
            strongest = np.argsort(-pooled, kind="stable")[:12]
            with f1:
                chart(plots.bar_chart([f"ch {c}" for c in strongest], pooled[strongest].tolist(),
                                      title=f"Input: {before['path']} ({pooled.size} values), strongest 12",
                                      height=320, fmt=".2f"), key="basics_fc_in")
        with f2:
            chart(plots.bar_chart([class_names[i] if i < len(class_names) else str(i) for i in top],
                                  logits[top].tolist(), title=f"Output: {last['path']} logits, top {len(top)}",
                                  height=320, fmt=".2f"), key="basics_fc_out")

st.subheader("Layer table")
if rows:
    table = svc.layer_table_rows(rows)
    st.dataframe(table, hide_index=True, width="stretch", height=min(420, 36 + 35 * len(table)))
    total_p, total_m = sum(r["params"] for r in rows), sum(r["macs"] for r in rows)
    st.caption(f"Total: {total_p:,} parameters, {total_m / 1e9:.3f} G multiply-adds per image. Receptive field "
               "arithmetic after Araujo et al., *Computing Receptive Fields of CNNs*, Distill 2019.")
    table_download(table, key="basics_table", stem=f"layers-{handle.name}")
