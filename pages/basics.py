"""CNN basics: the selected image through the selected model, stage by stage."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cnnviz_core import plots
from cnnviz_ui import chart, guard, page_header, page_selection, require_model
from cnnviz_ui.compute import feature_maps, layer_table, model_view, predict
from cnnviz_ui.widgets import fits_page

POOLS = ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")

page_header(
    "CNN basics", ":material/school:",
    "A convolutional network turns pixels into a class in a few repeated stages: **convolution** (learned "
    "local filters), **ReLU** (keep positive responses), **pooling** (shrink the map, grow the receptive "
    "field) and finally a **fully connected** classifier. Follow the selected image through the selected model.",
)
sel = page_selection()
handle = require_model(sel)

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

if not fits_page(handle, ["hooks"]):
    st.stop()  # the prediction above still works; the stages need layer activations

rows: list[dict] = []
with guard("Layer table"):
    rows = layer_table(handle)

st.subheader("Stage by stage")
convs = [i for i, r in enumerate(rows) if r["type"] == "Conv2d"]
if convs:
    labels = {i: f"{rows[i]['path']}  ({rows[i]['kernel']}×{rows[i]['kernel']}, stride {rows[i]['stride']}, "
                 f"{rows[i]['output_shape'][0]} filters)" for i in convs}
    c1, c2, c3 = st.columns([2, 1, 1])
    conv_i = c1.selectbox("Convolution layer", convs, format_func=lambda i: labels.get(i, str(i)), key="basics_conv")
    n_show = c2.slider("Channels shown", 4, 32, 16, step=4, key="basics_n")
    shared = c3.toggle("One colour scale per stage", value=False, key="basics_shared",
                       help="Off: each channel scaled alone (pattern). On: one scale per grid (which channels fire most).")
    nxt = next((i for i in convs if i > conv_i), len(rows))
    relu_i = next((i for i in range(conv_i + 1, nxt) if rows[i]["type"] == "ReLU"), None)
    pool_i = next((i for i in range(conv_i + 1, min(nxt + 1, len(rows))) if rows[i]["type"] in POOLS), None)
    stages = [("Convolution", conv_i)] + ([("ReLU", relu_i)] if relu_i is not None else []) \
        + ([("Pooling", pool_i)] if pool_i is not None else [])
    with guard("Feature maps"):
        maps = feature_maps(handle, sel, [rows[i]["path"] for _, i in stages])
        conv_out = maps[rows[conv_i]["path"]]
        order = np.argsort(-conv_out.reshape(conv_out.shape[0], -1).mean(axis=1), kind="stable")[:n_show]
        tabs = st.tabs([f"{name}: {rows[i]['path']}" for name, i in stages])
        for tab, (name, i) in zip(tabs, stages):
            row, fmap = rows[i], maps[rows[i]["path"]]
            with tab:
                shape = "×".join(str(s) for s in row["output_shape"])
                if name == "Convolution":
                    st.caption(f"Each of the {row['output_shape'][0]} filters slides a {row['kernel']}×{row['kernel']} "
                               f"window (stride {row['stride']}) over its input: output {shape}, receptive field "
                               f"{row['rf']} px. Showing the {len(order)} channels with the highest mean response.")
                elif name == "ReLU":
                    zero = float((fmap <= 0).mean())
                    st.caption(f"ReLU keeps positive responses and zeroes the rest: {zero:.0%} of the values are now 0 "
                               "(Nair & Hinton 2010; Krizhevsky et al. 2012).")
                else:
                    st.caption(f"{row['type']} (window {row['kernel'] or 'adaptive'}, stride {row['stride'] or '–'}) "
                               f"keeps the strongest response per window: output {shape}, receptive field "
                               f"{row['rf']} px, one step = {row['jump']} input pixels.")
                chart(plots.feature_map_grid(fmap[order], [f"ch {c}" for c in order], cols=8, shared_scale=shared,
                                             title=f"{row['path']} — {shape}"), key=f"basics_grid_{name}")
else:
    st.info("This model has no convolution layers to show.")

st.subheader("Fully connected classifier")
fc = [i for i, r in enumerate(rows) if r["type"] == "Linear"]
if fc:
    last = rows[fc[-1]]
    before = rows[fc[-1] - 1] if fc[-1] > 0 else None
    gap = any(r["type"] == "AdaptiveAvgPool2d" for r in rows)
    st.markdown(
        f"The last layer **{last['path']}** is fully connected: each class score (logit) is a weighted sum of all "
        f"{last['macs'] // max(1, last['output_shape'][0]):,} inputs ({last['params']:,} parameters)."
        + (" Global average pooling before it turns each channel into one number, its mean response — which "
           "is what makes CAM exact (Zhou et al. 2016)." if gap else "")
    )
    with guard("Classifier"):
        paths = [last["path"]] + ([before["path"]] if before is not None else [])
        outs = feature_maps(handle, sel, paths)
        logits = outs[last["path"]].reshape(-1)
        top = np.argsort(-logits, kind="stable")[:10]
        names = handle.class_names
        f1, f2 = st.columns(2)
        if before is not None:
            pooled = outs[before["path"]].reshape(-1)
            strongest = np.argsort(-pooled, kind="stable")[:12]
            with f1:
                chart(plots.bar_chart([f"ch {c}" for c in strongest], pooled[strongest].tolist(),
                                      title=f"Input: {before['path']} ({pooled.size} values), strongest 12",
                                      height=320, fmt=".2f"), key="basics_fc_in")
        with f2:
            chart(plots.bar_chart([names[i] if i < len(names) else str(i) for i in top], logits[top].tolist(),
                                  title=f"Output: {last['path']} logits, top {len(top)}", height=320, fmt=".2f"),
                  key="basics_fc_out")

st.subheader("Layer table")
if rows:
    table = [{
        "layer": r["path"], "type": r["type"], "output shape": " × ".join(str(s) for s in r["output_shape"]),
        "parameters": r["params"], "MACs (M)": round(r["macs"] / 1e6, 2),
        "receptive field (px)": str(r["rf"]) if r["rf"] is not None else "whole image",
    } for r in rows]
    st.dataframe(table, hide_index=True, width="stretch", height=min(420, 36 + 35 * len(table)))
    total_p, total_m = sum(r["params"] for r in rows), sum(r["macs"] for r in rows)
    st.caption(f"Total: {total_p:,} parameters, {total_m / 1e9:.3f} G multiply-adds per image. Receptive field "
               "arithmetic after Araujo et al., *Computing Receptive Fields of CNNs*, Distill 2019.")
