"""The sidebar shared by every page: model (with readiness), weights, image and device.

Rendered by ``dashboard.py`` before the page on every run, so the choices persist across pages.
Nothing here crashes: a model that cannot be loaded or an unreadable upload becomes one
``st.error`` line, and the pages fall back to sensible defaults.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import streamlit as st
from PIL import Image

from cnnviz_core import (
    SAMPLES, CnnvizError, ModelHandle, available_devices, entries, get_entry, image_digest,
)

from .errors import error_message, show_error
from .image_set import IMAGE_TYPES, limits_text, read_image_set
from .progress import get_job_pool, progress_callback
from .share import seed_from_url, write_sidebar
from .state import (
    DEFAULT_MODEL, DEFAULT_SAMPLE, Selection, cached_sample, dev_random, freeze_import_time_objects, get_engine,
    persist, restore_choices, selection, set_selection,
)
from .user_model import session_budget_mb
from .user_sidebar import user_model_section

UPLOAD_TYPES = IMAGE_TYPES
SOURCE_SAMPLE, SOURCE_UPLOAD = "Sample gallery", "Upload"
SOURCE_CATALOG, SOURCE_YOURS = "Catalog", "Your model"


@st.cache_data(show_spinner=False, ttl=20)
def _readiness_label(name: str) -> str:
    r = get_entry(name).readiness()
    if r.status == "needs download":
        return f"needs download ({r.download_mb:.0f} MB)"
    if r.status == "unavailable" and dev_random():
        return "dev: random weights"
    return r.status


def _model_label(name: str) -> str:
    return f"{get_entry(name).display_name} — {_readiness_label(name)}"


def _offline() -> bool:
    return bool(os.environ.get("CNNVIZ_OFFLINE"))


def _load(name: str, weights: Optional[str], device: str, *, allow_download: bool) -> ModelHandle:
    engine = get_engine()
    if not allow_download:
        return engine.model(name, weights, device, allow_download=False)
    update, bar = progress_callback(f"Downloading {name} weights…")
    try:
        return engine.model(name, weights, device, progress=update, allow_download=True)
    finally:
        bar.empty()


def _device_select() -> str:
    devices = available_devices()
    if st.session_state.get("sb_device") not in devices:
        st.session_state["sb_device"] = devices[0]
    return st.selectbox("Device", devices, **persist("sb_device"))


def _model_section() -> tuple[str, Optional[str], str, Optional[ModelHandle], Optional[str]]:
    names = [e.name for e in entries()]
    if st.session_state.get("sb_model") not in names:
        st.session_state["sb_model"] = DEFAULT_MODEL
    name = st.selectbox("Model", names, format_func=_model_label, **persist("sb_model"),
                        help="Readiness: ready = weights here; needs download = ImageNet weights not cached yet; "
                             "untrained = no published weights (random initialisation).")
    entry = get_entry(name)
    arch, status = entry.architecture, entry.readiness()
    random_weights = st.checkbox("Random weights (mechanics demo)", **persist("sb_random"),
                                 help="Initialise the network randomly (seed 0): the mechanics work, "
                                      "the explanations are meaningless.")
    device = _device_select()
    weights: Optional[str] = None if random_weights or status.status == "untrained" else "default"
    if weights and status.status == "unavailable" and dev_random():
        weights = None
    st.caption(arch.description + (f" · *{arch.paper}*" if arch.paper else ""))
    if weights and status.status == "unavailable":
        return name, weights, device, None, f"{name}: {status.detail}"
    if weights and status.status == "needs download":
        st.warning(f"{name} needs its ImageNet weights ({status.download_mb:.0f} MB) before it can run.",
                   icon=":material/download:")
        if _offline():
            return name, weights, device, None, (
                f"{name}: ImageNet weights are not in the cache and this app is offline — "
                f"{entry.default_source.where()}, and reload, or tick Random weights.")
        if not st.button(f"Download {status.download_mb:.0f} MB and load", key="sb_download"):
            return name, weights, device, None, None  # waiting for the click; the warning above says why
        return _try_load(name, weights, device, allow_download=True)
    return _try_load(name, weights, device, allow_download=False)


def _try_load(name: str, weights: Optional[str], device: str, *, allow_download: bool):
    try:
        with st.spinner(f"Loading {name}…"):
            handle = _load(name, weights, device, allow_download=allow_download)
    except CnnvizError as exc:
        return name, weights, device, None, error_message(exc)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        show_error(exc)
        return name, weights, device, None, error_message(exc)
    return name, weights, device, handle, None


_SET_KEY = "sb_image_set"  # the last decoded set: survives the uploader losing its widget identity


def _on_upload() -> None:
    if st.session_state.get("sb_upload"):
        st.session_state["sb_source"] = st.session_state["_keep_sb_source"] = SOURCE_UPLOAD
    else:  # the visitor removed the files
        st.session_state.pop(_SET_KEY, None)


def _image_section() -> tuple[Image.Image, str, tuple]:
    """``(image, label, image set)``: the image to look at, and the whole uploaded set (or ())."""
    if st.session_state.get("sb_sample") not in SAMPLES:
        st.session_state["sb_sample"] = DEFAULT_SAMPLE
    source = st.radio("Image source", [SOURCE_SAMPLE, SOURCE_UPLOAD], horizontal=True, **persist("sb_source"))
    if source == SOURCE_SAMPLE:
        name = st.selectbox("Sample", list(SAMPLES), **persist("sb_sample"))
        return cached_sample(name), name, ()
    uploads = st.file_uploader("Images or a zip of them", type=IMAGE_TYPES + ["zip"], accept_multiple_files=True,
                               key="sb_upload", on_change=_on_upload, help=limits_text())
    st.caption(limits_text())
    if uploads:
        memo = st.session_state.setdefault("sb_upload_memo", {})
        found = read_image_set([(u.name, u.getvalue()) for u in uploads], memo)
        st.session_state[_SET_KEY] = found
    else:
        # A page run on its own (a deep link, AppTest.switch_page) draws the uploader anew, empty:
        # keep the set the visitor uploaded until they remove it.
        found = st.session_state.get(_SET_KEY)
        if found is None:
            st.caption("No file yet: showing the first sample.")
            return cached_sample(DEFAULT_SAMPLE), DEFAULT_SAMPLE, ()
        st.caption(f"Your {len(found.images)} uploaded image(s) from before.")
    for line in found.problems:
        if found.images:
            st.warning(line, icon=":material/broken_image:")
        else:
            st.error(line, icon=":material/broken_image:")
    if not found.images:
        st.caption("Showing the first sample instead.")
        return cached_sample(DEFAULT_SAMPLE), DEFAULT_SAMPLE, ()
    labels = [i.label for i in found.images]
    if len(labels) > 1:
        if st.session_state.get("sb_pick") not in labels:
            st.session_state["sb_pick"] = labels[0]
        picked = st.selectbox(f"Look at ({len(labels)} images)", labels, **persist("sb_pick"),
                              help="The CAM page can show every image of the set at once (Images × methods).")
    else:
        picked = labels[0]
    chosen = found.images[labels.index(picked)]
    return chosen.image, chosen.label, found.images


_FRAME = threading.local()  # .active: inside dashboard.py's page.run() in this script thread
from .navigation import REDIRECTED_KEY as _REDIRECTED_KEY  # noqa: E402


@contextmanager
def app_frame() -> Iterator[None]:
    """Wrap ``page.run()`` in the entrypoint: tells :func:`page_selection` the sidebar is drawn."""
    # A thread-local, not session state: a write to session state in ``finally`` after ``st.stop()``
    # can be lost, which left the flag set for a later run of the page script on its own.
    _FRAME.active = True
    try:
        yield
    finally:
        _FRAME.active = False


def page_selection() -> Selection:
    """Call once at the top of every page: the sidebar's selection.

    A page can run without the entrypoint: Streamlit serves a deep link in its legacy ``pages/``
    mode until some session has called ``st.navigation`` (the first request after the server
    starts), and ``AppTest.switch_page`` does the same. Then, once per session, the page registers
    the navigation (which switches Streamlit to it for good) and reruns through ``dashboard.py``;
    if that is not possible it draws the same sidebar itself.
    """
    if getattr(_FRAME, "active", False):
        return selection()
    if not st.session_state.get(_REDIRECTED_KEY):
        st.session_state[_REDIRECTED_KEY] = True
        from .navigation import navigation_pages

        st.navigation(navigation_pages(), position="sidebar", expanded=True)
        st.rerun()
    return render_sidebar()


def _server_details(own: Optional[ModelHandle]) -> None:
    """What this server holds: the shared model cache against its budget, this session's own model,
    and the long-job queue."""
    with st.expander("Server details", icon=":material/memory:"):
        mem, jobs = get_engine().memory(), get_job_pool().snapshot()
        st.caption(f"Shared models: {mem['total_mb']:.0f} of {mem['budget_mb']:.0f} MB "
                   f"(CNNVIZ_MODEL_CACHE_MB), {len(mem['models'])} loaded, {mem['evicted']} evicted since start")
        for key, mb in reversed(mem["models"]):
            st.caption(f"· {key.split('|')[0]} — {mb:.0f} MB")
        if own is not None:
            st.caption(f"Your own model: {own.nbytes() / 2**20:.0f} MB of your session's "
                       f"{session_budget_mb():.0f} MB (CNNVIZ_SESSION_MODEL_MB), visible to you only")
        st.caption(f"Long jobs: {jobs['running']} running, {jobs['queued']} waiting, {jobs['workers']} at a time "
                   "(CNNVIZ_LONG_JOBS)")


def render_sidebar() -> Selection:
    """Draw the sidebar and store/return the :class:`Selection` the pages use.

    At a session's start the URL's query string seeds the widgets (a shared link); every run writes
    the sidebar's values back to it (:mod:`cnnviz_ui.share`). The first call in a process freezes the
    import-time objects (:func:`~cnnviz_ui.state.freeze_import_time_objects`), before any model loads."""
    freeze_import_time_objects()
    seed_from_url()
    restore_choices()
    with st.sidebar:
        st.markdown("### :material/neurology: Model")
        mine = st.radio("Model source", [SOURCE_CATALOG, SOURCE_YOURS], horizontal=True,
                        **persist("sb_model_source")) == SOURCE_YOURS
        if mine:
            device = _device_select()
            handle, model_error = user_model_section(device)
            name, weights = (handle.name if handle is not None else "your model"), "file"
        else:
            name, weights, device, handle, model_error = _model_section()
        if model_error:
            st.error(model_error, icon=":material/error:")
        elif handle is not None and not mine:
            st.caption(f"Loaded: {handle.weights_label} on {handle.device} · {handle.input_size} px input · "
                       f"{handle.num_classes} classes")
        st.markdown("### :material/image: Image")
        image, label, images = _image_section()
        st.image(image, caption=f"{label} · {image.size[0]}×{image.size[1]}", width="stretch")
        _server_details(handle if mine else None)
    write_sidebar()
    sel = Selection(name, weights, device, image, label, image_digest(image), handle, model_error, images, mine)
    set_selection(sel)
    return sel
