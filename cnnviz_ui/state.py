"""The app's shared objects: the cached :class:`~cnnviz_core.engine.Engine` and the current selection.

The sidebar (rendered by ``dashboard.py`` on every run, before the page) stores a :class:`Selection`
in ``st.session_state``; pages read it with :func:`selection`. Widget keys of the sidebar start with
``sb_`` and, because the entrypoint renders them on every page, their values persist across pages.
"""
from __future__ import annotations

import gc
import importlib
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional, TypeVar

import streamlit as st
from PIL import Image

from cnnviz_core import SAMPLES, Engine, ModelHandle, image_digest, sample_image

T = TypeVar("T")

DEFAULT_MODEL = "shapes-cnn"
DEFAULT_SAMPLE = next(iter(SAMPLES))
_SELECTION_KEY = "cnnviz_selection"
#: Development switch: load our own models with random weights while their trained files are missing.
DEV_RANDOM_ENV = "CNNVIZ_DEV_RANDOM"


@st.cache_resource(show_spinner=False)
def get_engine() -> Engine:
    """The process-wide engine (models and result caches shared by every session)."""
    return Engine()  # budget: $CNNVIZ_MODEL_CACHE_MB


_FREEZE_LOCK = threading.Lock()
_frozen_count: Optional[int] = None
#: What the pages import on first use (the metrics pull in scipy.stats and skimage.metrics, the audit
#: pyarrow, the tables pandas, the sample photos skimage.data): imported before the freeze, so that
#: their ~1,000 modules' objects are frozen too rather than scanned after every run (~30 ms each).
FIRST_USE_IMPORTS = ("cnnviz_core.metrics", "cnnviz_core.audit", "pandas", "skimage.data",
                     "skimage.segmentation", "plotly.express")


def freeze_import_time_objects() -> int:
    """Once per process, after the engine's import (a second call does nothing): import
    :data:`FIRST_USE_IMPORTS`, then move every object alive now (modules, classes, functions: ~400k,
    most of them torch's and scipy's) to the garbage collector's permanent generation, and return how
    many. Streamlit runs a full ``gc.collect()`` after every script run (``runner.postScriptGC``);
    scanning these objects took 250-350 ms of each rerun, a display change's included. Objects made
    later (models, results, figures) are collected as usual."""
    global _frozen_count
    with _FREEZE_LOCK:
        if _frozen_count is None:
            for name in FIRST_USE_IMPORTS:
                importlib.import_module(name)
            gc.collect()
            gc.freeze()
            _frozen_count = gc.get_freeze_count()
        return _frozen_count


def dev_random() -> bool:
    return os.environ.get(DEV_RANDOM_ENV, "").strip() in ("1", "true", "yes")


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose. ``handle`` is None when the model could not be loaded (``model_error``)."""

    model_name: str
    weights: Optional[str]  # "default" or None (random initialisation)
    device: str
    image: Image.Image
    image_label: str
    digest: str
    handle: Optional[ModelHandle] = None
    model_error: Optional[str] = None
    #: The uploaded image set (``cnnviz_ui.image_set.SetImage``s; ``image`` is the one picked), or ().
    images: tuple = ()
    #: True when ``handle`` is this session's own model (sidebar "Your model"), never a catalog one.
    user_model: bool = False


@st.cache_data(show_spinner=False, max_entries=16)
def cached_sample(name: str) -> Image.Image:
    return sample_image(name)


def default_selection() -> Selection:
    """The selection when the sidebar has not run (a page script run on its own): the default
    model and the first sample image."""
    from cnnviz_core import CnnvizError, get_entry

    image = cached_sample(DEFAULT_SAMPLE)
    weights = "default" if get_entry(DEFAULT_MODEL).available_weights() or not dev_random() else None
    try:
        handle, error = get_engine().model(DEFAULT_MODEL, weights), None
    except CnnvizError as exc:
        handle, error = None, " ".join(str(exc).split())
    return Selection(DEFAULT_MODEL, weights, "auto", image, DEFAULT_SAMPLE, image_digest(image), handle, error)


def set_selection(sel: Selection) -> None:
    st.session_state[_SELECTION_KEY] = sel


def selection() -> Selection:
    """The current sidebar selection (defaults when the sidebar has not run in this session)."""
    sel = st.session_state.get(_SELECTION_KEY)
    return sel if isinstance(sel, Selection) else default_selection()


def require_model(sel: Optional[Selection] = None) -> ModelHandle:
    """The selected model's handle, or a one-line message and ``st.stop()`` when it is unavailable."""
    sel = sel or selection()
    if sel.handle is not None:
        return sel.handle
    if sel.user_model:
        st.info("This page needs a loaded model: load your model in the sidebar (*Your model*), or switch the "
                "model source back to the catalog.", icon=":material/info:")
        st.stop()
    st.info(
        f"This page needs a loaded model: {sel.model_name} is not loaded. Download its weights from the sidebar, "
        "pick a ready model, or tick *Random weights (mechanics demo)*.",
        icon=":material/info:",
    )
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def session_owner() -> str:
    """A random id of this browser session (owner of its long jobs and of results of its uploads)."""
    return st.session_state.setdefault("_cnnviz_session_id", uuid.uuid4().hex)


def cached(key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """``compute()`` memoised in the engine's shared result cache under ``key``.

    Keys start with a tag naming the computation and contain the model key and image digest, so
    changing display-only controls (colormap, opacity...) never reruns a model pass. While the
    selection holds an upload (images or your own model) the key also names this session: results of
    uploads are never cached for another session.
    """
    sel = st.session_state.get(_SELECTION_KEY)
    if isinstance(sel, Selection) and (sel.images or sel.user_model):
        key = (*key, "session", session_owner())
    return get_engine().results.get_or_compute(key, compute)


def _remember(key: str) -> None:
    st.session_state[f"_keep_{key}"] = st.session_state[key]


def persist(key: str) -> dict:
    """Widget kwargs that make ``key``'s value survive page switches (see :func:`restore_choices`)."""
    return {"key": key, "on_change": _remember, "args": (key,)}


def restore_choices() -> None:
    """Re-apply the last choices of the :func:`persist` widgets (saved by their ``on_change``) before
    drawing them.

    Through ``dashboard.py`` the widgets keep their identity on every page anyway; a page run on its
    own (legacy ``pages/`` mode, ``AppTest.switch_page``) gives them new identities, which would
    reset them to the defaults without this.
    """
    for name in [k for k in st.session_state if isinstance(k, str) and k.startswith("_keep_")]:
        st.session_state[name[len("_keep_"):]] = st.session_state[name]


def page_state(page: str, name: str, default: Any = None) -> Any:
    """Per-page session storage (results of long runs that must survive reruns)."""
    return st.session_state.setdefault(f"{page}:{name}", default)
