"""Applications page: audit the sidebar's uploaded image set in this session (progress, Stop), then
show the results in the audit view (:func:`~.audit_view.render_audit_frame`)."""
from __future__ import annotations

import streamlit as st

from .audit_view import render_audit_frame
from .progress import run_controls, run_task, show_status, task_state
from .set_audit import SET_METRICS, audit_image_set
from .state import Selection
from .user_model import HOOK_FREE_METHODS

TASK = "app_set_audit"


def audit_uploaded_set(sel: Selection) -> None:
    """The "audit your uploaded images" block (a caption only, until a set and a model are there)."""
    from cnnviz_core.attribution import METHODS

    st.markdown("#### Audit the images you uploaded")
    if not sel.images:
        st.caption("Upload several images (or a zip) in the sidebar (*Image source: Upload*) to audit them here with "
                   "the sidebar's model, in this session: deletion and insertion AUC per image and method.")
        return
    handle = sel.handle
    if handle is None:
        st.info("Load a model in the sidebar to audit your uploaded images.", icon=":material/info:")
        return
    hookable = getattr(handle, "hookable", True)
    offered = [k for k, m in METHODS.items() if not m.long_running and (hookable or k in HOOK_FREE_METHODS)]
    default = [m for m in ("gradcam", "saliency") if m in offered] or offered[:1]
    c1, c2 = st.columns([3, 1])
    methods = c1.multiselect("Methods", offered, default=default, max_selections=4, key="app_set_methods",
                             format_func=lambda k: METHODS[k].display_name, wrap=True)
    steps = c2.select_slider("Deletion / insertion steps", [8, 16, 32], value=16, key="app_set_steps")
    st.caption(f"{len(sel.images)} images × {len(methods)} methods with {handle.spec.display_name or handle.name}, "
               f"each image's top class; metrics: {', '.join(SET_METRICS)} (no masks, so no pointing game). "
               "Runs here, in this session; Stop ends it between batches of 4 images.")
    params = (handle.key, tuple(i.digest for i in sel.images), tuple(methods), steps)
    state = task_state(TASK)
    if run_controls(TASK, f"Audit {len(sel.images)} images"):
        if not methods:
            st.error("Choose at least one method.", icon=":material/error:")
        else:
            images = {i.label: i.image for i in sel.images}
            state = run_task(TASK, params, lambda progress, cancel: (audit_image_set(
                handle, sel.images, methods, steps=steps, progress=progress, cancel=cancel), images))
    show_status(state, "Audit")
    if state.status == "done" and state.result is not None:
        if state.params != params:
            st.caption("The images, model or settings changed since this run: press **Audit** to update.")
        frame, images = state.result
        render_audit_frame(frame, images, key="audit_set")
