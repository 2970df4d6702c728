"""Architecture evolution: AlexNet -> ZFNet -> VGG (and ResNet for context)."""
from __future__ import annotations

import html

import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_core import plots
from cnnviz_ui import chart, guard, page_header, page_selection
from cnnviz_ui import services as svc
from cnnviz_ui.widgets import export_buttons, grid_png_bytes, table_download

KERNEL_MODELS = ("alexnet", "zfnet", "vgg16", "resnet18")

page_header(
    "From AlexNet (2012) to VGG (2014), ImageNet winners got deeper and their first layers finer; ResNet "
    "(2015) is shown for context. Facts below are computed from the architectures themselves "
    "(depth, parameters, multiply-adds) and from torchvision's weights metadata (ImageNet accuracy, GFLOPS) "
    "— nothing needs a download.",
)
sel = page_selection()  # draws the shared sidebar; this page compares fixed architectures
if sel.user_model:
    st.caption("This page compares the classic architectures; your model is not among them (the other pages use it).")

rows: list[dict] = []
with guard("Architecture comparison"):
    rows = svc.comparison_rows()

if rows:
    st.subheader("Side by side")
    table = svc.architecture_table(rows)
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption("Accuracy: single-crop ImageNet-1k validation from torchvision's weights metadata; ZFNet from the "
               "paper (Zeiler & Fergus 2014, Table 2) since it has no published weights. GFLOPS count one "
               "multiply-add as one operation.")
    table_download(table, key="arch_table", stem="architectures")

    points = [dict(r, params_m=r["params"] / 1e6) for r in rows]
    c1, c2 = st.columns(2)
    with c1:
        chart(plots.scatter_figure(points, x="gflops", y="acc1", label="name", size="params_m", xlabel="GFLOPS",
                                   ylabel="ImageNet top-1 (%)", title="Accuracy vs compute (bubble = parameters)",
                                   log_x=True), key="arch_acc_flops")
    with c2:
        chart(plots.scatter_figure(points, x="params_m", y="acc1", label="name", xlabel="parameters (millions)",
                                   ylabel="ImageNet top-1 (%)", title="Accuracy vs parameters", log_x=True),
              key="arch_acc_params")
    chart(plots.scatter_figure(points, x="year", y="depth", label="name", size="params_m", xlabel="year",
                               ylabel="weight layers on the longest path", title="Depth over time"),
          key="arch_depth")

    st.subheader("What each brought")
    for r in rows:
        # Registry text goes into HTML here: escaped, so a registered model's name or paper stays text.
        st.markdown(f"- **{html.escape(str(r['name']))}** ({r['year']}): {html.escape(str(r['contribution']))}"
                    f"  \n  <small>{html.escape(str(r['paper']))}</small>", unsafe_allow_html=True)

st.subheader("First-layer kernels")
cols = st.columns(len(KERNEL_MODELS))
labels = []
montages = {}
for col, name in zip(cols, KERNEL_MODELS):
    with col, guard(name):
        first = svc.first_layer_kernels(name, sel.device)
        labels.append(first.weights_label)
        montages[f"{name} {first.layer}"] = first.image
        chart(plots.image_figure(first.image, title=f"{name} · {first.layer}", height=300), key=f"arch_k_{name}")
        st.caption(first.weights_label)
if montages:
    export_buttons("arch_kernels", "first-layer-kernels", png_label="Kernels (PNG)",
                   png=lambda: grid_png_bytes(montages, cols=len(montages)))
if any("random" in lab for lab in labels):
    st.warning(
        "Kernels marked *random init* are untrained (ImageNet weights are not in the local cache and this "
        "app works offline): they show the kernel **sizes** — 11×11 stride 4 (AlexNet), 7×7 stride 2 (ZFNet), "
        "3×3 (VGG) — not learned patterns. Put the torchvision checkpoint in `$TORCH_HOME/hub/checkpoints/` "
        "(see the sidebar's model list) to see the real Gabor-like and colour-blob filters.",
        icon=":material/info:",
    )
