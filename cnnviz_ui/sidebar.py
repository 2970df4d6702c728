"""The sidebar shared by every page: model (with readiness), weights, image and device.

Rendered by ``dashboard.py`` before the page on every run, so the choices persist across pages.
Nothing here crashes: a model that cannot be loaded or an unreadable upload becomes one
``st.error`` line, and the pages fall back to sensible defaults.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from typing import Iterator, Optional

import streamlit as st
from PIL import Image

from cnnviz_core import (
    SAMPLES, CnnvizError, ModelHandle, available_devices, get_spec, image_digest, list_specs, load_image, readiness,
)

from cnnviz_core.models.registry import hub_checkpoint_path

from .errors import error_message, show_error
from .progress import progress_callback
from .state import (
    DEFAULT_MODEL, DEFAULT_SAMPLE, Selection, cached_sample, dev_random, get_engine, selection, set_selection,
)

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
SOURCE_SAMPLE, SOURCE_UPLOAD = "Sample gallery", "Upload"


@st.cache_data(show_spinner=False, ttl=20)
def _readiness_label(name: str) -> str:
    r = readiness(get_spec(name))
    if r.status == "needs download":
        return f"needs download ({r.download_mb:.0f} MB)"
    if r.status == "unavailable" and dev_random():
        return "dev: random weights"
    return r.status


def _model_label(name: str) -> str:
    return f"{get_spec(name).display_name} — {_readiness_label(name)}"


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


_PERSISTENT = ("sb_model", "sb_random", "sb_device", "sb_source", "sb_sample")


def _restore_choices() -> None:
    """Re-apply the last sidebar choices (saved by the widgets' ``on_change``) before drawing them.

    Through ``dashboard.py`` the widgets keep their identity on every page anyway; a page run on its
    own (legacy ``pages/`` mode, ``AppTest.switch_page``) gives them new identities, which would
    reset them to the defaults without this.
    """
    for key in _PERSISTENT:
        if f"_keep_{key}" in st.session_state:
            st.session_state[key] = st.session_state[f"_keep_{key}"]


def _remember(key: str) -> None:
    st.session_state[f"_keep_{key}"] = st.session_state[key]


def _persist(key: str) -> dict:
    """Widget kwargs that make ``key``'s value survive page switches."""
    return {"key": key, "on_change": _remember, "args": (key,)}


def _model_section() -> tuple[str, Optional[str], str, Optional[ModelHandle], Optional[str]]:
    names = [s.name for s in list_specs()]
    if st.session_state.get("sb_model") not in names:
        st.session_state["sb_model"] = DEFAULT_MODEL
    name = st.selectbox("Model", names, format_func=_model_label, **_persist("sb_model"),
                        help="Readiness: ready = weights here; needs download = ImageNet weights not cached yet; "
                             "untrained = no published weights (random initialisation).")
    spec = get_spec(name)
    status = readiness(spec)
    random_weights = st.checkbox("Random weights (mechanics demo)", **_persist("sb_random"),
                                 help="Initialise the network randomly (seed 0): the mechanics work, "
                                      "the explanations are meaningless.")
    devices = available_devices()
    if st.session_state.get("sb_device") not in devices:
        st.session_state["sb_device"] = devices[0]
    device = st.selectbox("Device", devices, **_persist("sb_device"))
    weights: Optional[str] = None if random_weights or status.status == "untrained" else "default"
    if weights and status.status == "unavailable" and dev_random():
        weights = None
    if spec.family == "ours":
        st.caption(spec.description)
    elif spec.paper:
        st.caption(f"{spec.description}. *{spec.paper}*")
    if weights and status.status == "unavailable":
        return name, weights, device, None, f"{name}: {status.detail}"
    if weights and status.status == "needs download":
        st.warning(f"{name} needs its ImageNet weights ({status.download_mb:.0f} MB) before it can run.",
                   icon=":material/download:")
        if _offline():
            path = hub_checkpoint_path(spec.weights_enum.url)
            return name, weights, device, None, (
                f"{name}: ImageNet weights are not in the cache and this app is offline — copy {path.name} into "
                f"{path.parent} (or set TORCH_HOME) and reload, or tick Random weights.")
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


def _on_upload() -> None:
    if st.session_state.get("sb_upload") is not None:
        st.session_state["sb_source"] = st.session_state["_keep_sb_source"] = SOURCE_UPLOAD


def _decode_upload(data: bytes, filename: str) -> Image.Image:
    memo = st.session_state.setdefault("sb_upload_memo", {})
    key = hashlib.sha256(data).hexdigest()
    if key not in memo:
        memo.clear()
        try:
            memo[key] = load_image(data, max_side=1024)
        except CnnvizError as exc:
            memo[key] = exc
    value = memo[key]
    if isinstance(value, Exception):
        raise type(value)(str(value).replace("upload:", f"{filename}:", 1))
    return value


def _image_section() -> tuple[Image.Image, str]:
    if st.session_state.get("sb_sample") not in SAMPLES:
        st.session_state["sb_sample"] = DEFAULT_SAMPLE
    source = st.radio("Image source", [SOURCE_SAMPLE, SOURCE_UPLOAD], horizontal=True, **_persist("sb_source"))
    if source == SOURCE_SAMPLE:
        name = st.selectbox("Sample", list(SAMPLES), **_persist("sb_sample"))
        return cached_sample(name), name
    upload = st.file_uploader("PNG, JPEG, WebP, BMP or TIFF (≤ 50 MB)", type=UPLOAD_TYPES, key="sb_upload",
                              on_change=_on_upload)
    if upload is None:
        st.caption("No file yet: showing the first sample.")
        return cached_sample(DEFAULT_SAMPLE), DEFAULT_SAMPLE
    try:
        return _decode_upload(upload.getvalue(), upload.name), upload.name
    except CnnvizError as exc:
        st.error(error_message(exc), icon=":material/broken_image:")
        st.caption("Showing the first sample instead.")
        return cached_sample(DEFAULT_SAMPLE), DEFAULT_SAMPLE


_FRAME_KEY = "_cnnviz_frame_active"
_REDIRECTED_KEY = "_cnnviz_redirected_to_navigation"


@contextmanager
def app_frame() -> Iterator[None]:
    """Wrap ``page.run()`` in the entrypoint: tells :func:`page_selection` the sidebar is drawn."""
    st.session_state[_FRAME_KEY] = True
    try:
        yield
    finally:
        st.session_state[_FRAME_KEY] = False


def page_selection() -> Selection:
    """Call once at the top of every page: the sidebar's selection.

    A page can run without the entrypoint: Streamlit serves a deep link in its legacy ``pages/``
    mode until some session has called ``st.navigation`` (the first request after the server
    starts), and ``AppTest.switch_page`` does the same. Then, once per session, the page registers
    the navigation (which switches Streamlit to it for good) and reruns through ``dashboard.py``;
    if that is not possible it draws the same sidebar itself.
    """
    if st.session_state.get(_FRAME_KEY):
        return selection()
    if not st.session_state.get(_REDIRECTED_KEY):
        st.session_state[_REDIRECTED_KEY] = True
        from .navigation import navigation_pages

        st.navigation(navigation_pages(), position="sidebar", expanded=True)
        st.rerun()
    return render_sidebar()


def render_sidebar() -> Selection:
    """Draw the sidebar and store/return the :class:`Selection` the pages use."""
    _restore_choices()
    with st.sidebar:
        st.markdown("### :material/neurology: Model")
        name, weights, device, handle, model_error = _model_section()
        if model_error:
            st.error(model_error, icon=":material/error:")
        elif handle is not None:
            st.caption(f"Loaded: {handle.weights_label} on {handle.device} · {handle.input_size} px input · "
                       f"{handle.num_classes} classes")
        st.markdown("### :material/image: Image")
        image, label = _image_section()
        st.image(image, caption=f"{label} · {image.size[0]}×{image.size[1]}", width="stretch")
    sel = Selection(name, weights, device, image, label, image_digest(image), handle, model_error)
    set_selection(sel)
    return sel
