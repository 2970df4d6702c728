"""Architecture evolution: AlexNet -> ZFNet -> VGG (and ResNet for context)."""
from __future__ import annotations

import html

import numpy as np
import streamlit as st

from cnnviz_core import get_entry, load_model, plots
from cnnviz_core.featureviz.compare import DEFAULT_MODELS, architecture_comparison
from cnnviz_core.featureviz.filters import kernel_montage
from cnnviz_ui import cached, chart, guard, page_header, page_selection

KERNEL_MODELS = ("alexnet", "zfnet", "vgg16", "resnet18")

page_header(
    "Architecture evolution", ":material/timeline:",
    "From AlexNet (2012) to VGG (2014), ImageNet winners got deeper and their first layers finer; ResNet "
    "(2015) is shown for context. Facts below are computed from the architectures themselves "
    "(depth, parameters, multiply-adds) and from torchvision's weights metadata (ImageNet accuracy, GFLOPS) "
    "— nothing needs a download.",
)
if page_selection().user_model:  # draws the shared sidebar; this page compares fixed architectures
    st.caption("This page compares the classic architectures; your model is not among them (the other pages use it).")


@st.cache_data(show_spinner="Tracing the architectures…")
def comparison() -> list[dict]:
    return architecture_comparison(DEFAULT_MODELS)


def conv1_kernels(name: str) -> tuple[np.ndarray, str, str]:
    """(montage uint8, layer path, weights label) of ``name``'s first convolution."""
    weights = get_entry(name).available_weights()
    trained = weights is not None

    def compute() -> tuple[np.ndarray, str, str]:
        # Loaded outside the engine's model cache: only conv1 is needed, once (the montage is cached).
        handle = load_model(name, weights, device="cpu")
        layer = handle.conv_layers[0]
        k = int(handle.module(layer).kernel_size[0])
        image = kernel_montage(handle, layer, view="rgb", max_filters=64, upscale=max(1, 33 // k), pad=2)
        return image, layer, handle.weights_label

    return cached(("conv1-montage", name, trained), compute)


rows: list[dict] = []
with guard("Architecture comparison"):
    rows = comparison()

if rows:
    st.subheader("Side by side")
    st.dataframe(
        [{
            "model": r["name"], "year": r["year"], "weight layers": r["depth"], "parameters (M)": round(r["params"] / 1e6, 1),
            "GFLOPS": round(r["gflops"], 2), "ImageNet top-1 %": None if r["acc1"] is None else round(r["acc1"], 1),
            "top-5 %": None if r["acc5"] is None else round(r["acc5"], 1),
            "conv1": f"{r['conv1_kernel']}×{r['conv1_kernel']} / stride {r['conv1_stride']}",
        } for r in rows],
        hide_index=True, width="stretch",
    )
    st.caption("Accuracy: single-crop ImageNet-1k validation from torchvision's weights metadata; ZFNet from the "
               "paper (Zeiler & Fergus 2014, Table 2) since it has no published weights. GFLOPS count one "
               "multiply-add as one operation.")

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
for col, name in zip(cols, KERNEL_MODELS):
    with col, guard(name):
        image, layer, label = conv1_kernels(name)
        labels.append(label)
        chart(plots.image_figure(image, title=f"{name} · {layer}", height=300), key=f"arch_k_{name}")
        st.caption(label)
if any("random" in lab for lab in labels):
    st.warning(
        "Kernels marked *random init* are untrained (ImageNet weights are not in the local cache and this "
        "app works offline): they show the kernel **sizes** — 11×11 stride 4 (AlexNet), 7×7 stride 2 (ZFNet), "
        "3×3 (VGG) — not learned patterns. Put the torchvision checkpoint in `$TORCH_HOME/hub/checkpoints/` "
        "(see the sidebar's model list) to see the real Gabor-like and colour-blob filters.",
        icon=":material/info:",
    )
