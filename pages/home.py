"""Home: what cnnviz is for, and one card per topic with a live thumbnail of the sidebar's model and
image, each linking to its page. The cards and links are drawn first; the thumbnails fill in after."""
from __future__ import annotations

import streamlit as st

from cnnviz_ui.navigation import enter_through_dashboard

enter_through_dashboard()  # a deep link served on its own: through dashboard.py first

from cnnviz_ui import error_message, page_header, page_selection
from cnnviz_ui.compute import predict
from cnnviz_ui.navigation import HOME, PAGES
from cnnviz_ui.thumbnails import ThumbnailUnavailable, thumbnail, topics

COLUMNS = 4

page_header(
    "**cnnviz shows what a convolutional network computes, and why it decides what it decides.** "
    "Pick a model and an image in the sidebar: each page below opens one part of the network — the filters "
    "it learned, what its layers respond to, and which regions of the image drove its decision — with live "
    "pictures of that model on that image. Our own small models see generated scenes whose right answer is "
    "known, so an explanation can be checked, not only looked at."
)
sel = page_selection()
handle = sel.handle
if handle is not None:
    top = predict(handle, sel, topk=1)[0]
    st.markdown(f":material/neurology: **{handle.name}** ({handle.weights_label}) on *{sel.image_label}* "
                f"predicts **{top[1]}** ({top[2]:.0%}). New here? Start with **CNN basics**; to see why the "
                "model decided, open **CAM & Grad-CAM**.")
else:
    st.info("No model is loaded (see the sidebar), so the cards show no pictures; every page still opens.",
            icon=":material/info:")

slots = {}
cards = [p for p in PAGES if p is not HOME]
for start in range(0, len(cards), COLUMNS):
    for col, info in zip(st.columns(COLUMNS), cards[start:start + COLUMNS]):
        with col.container(border=True, height="stretch"):
            st.caption(info.section)
            st.page_link(info.path, label=f"**{info.title}**", icon=info.material_icon, width="stretch")
            slots[info.stem] = st.skeleton(height=140) if handle is not None and info.stem in topics() else None
            st.caption(info.summary)

for stem, slot in slots.items():
    if slot is None:
        continue
    try:
        thumb = thumbnail(stem, handle, sel)
    except ThumbnailUnavailable as exc:
        slot.caption(f":material/visibility_off: No preview: {exc}")
    except Exception as exc:  # noqa: BLE001 - a preview never breaks the home page
        slot.caption(f":material/visibility_off: No preview: {error_message(exc)}")
    else:
        slot.image(thumb.image, caption=thumb.caption, width="stretch")
