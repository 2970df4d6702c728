"""The sidebar's "Your model" section: upload a model file (or give a path under the model folder),
optional class names, architecture and preprocessing; the model loads when its inputs change and
stays this session's own (:mod:`.user_model`). Errors are one ``st.error`` line; the app keeps running."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import streamlit as st

from cnnviz_core import CnnvizError, ModelHandle
from cnnviz_core.models import MODEL_SUFFIXES
from cnnviz_core.paths import MODEL_ROOT_ENV, model_roots

from .errors import LOG, error_message
from .state import persist
from .user_model import (
    IMAGENET_MEAN_TEXT, IMAGENET_STD_TEXT, LABELS_UPLOAD_MB, MODEL_UPLOAD_MB, architecture_choices, attempt_error,
    clear_user_model, describe, install, labels_from_upload, load_path_model, load_uploaded_model, make_options,
    notes_line, record_failure, user_model, was_attempted,
)

FROM_UPLOAD, FROM_PATH = "Upload", "Path on the server"
_GENERATION = "_um_generation"  # bumped by Remove: gives the uploaders new, empty identities
DEFAULTS_TEXT = ("Defaults: the architecture's own — torchvision and timm: 224 px crop of a 256 px resize, "
                 f"ImageNet mean {IMAGENET_MEAN_TEXT} and std {IMAGENET_STD_TEXT}; a .pt2 or TorchScript "
                 "program: its own fixed input size (else 224).")


def _remove() -> None:
    clear_user_model()
    st.session_state[_GENERATION] = st.session_state.get(_GENERATION, 0) + 1


def user_model_section(device: str) -> tuple[Optional[ModelHandle], Optional[str]]:
    """Draw the section; ``(handle, error)``: this session's model (None before one is loaded) and
    the one-line error of the last attempt, if it failed."""
    gen = st.session_state.get(_GENERATION, 0)
    roots = ", ".join(f"`{r}`" for r in model_roots())
    how = st.radio("Your model from", [FROM_UPLOAD, FROM_PATH], horizontal=True, **persist("sb_um_from"))
    upload, path_text = None, ""
    if how == FROM_UPLOAD:
        upload = st.file_uploader(
            f"Model file (≤ {MODEL_UPLOAD_MB} MB)", type=[s.lstrip(".") for s in MODEL_SUFFIXES], key=f"sb_um_file_{gen}",
            help="A state_dict or training checkpoint (.pt .pth .bin .ckpt .safetensors; never unpickled as code), "
                 "a torch.export program (.pt2) or TorchScript (.ts .torchscript). It stays in this browser "
                 "session only: never cached for or shown to anyone else.")
        st.caption(f"Bigger files: put them under {roots} and give the path.")
    else:
        path_text = st.text_input(
            "Model path", placeholder="my-model.pth", **persist("sb_um_path"),
            help=f"Only files under {', '.join(map(str, model_roots()))} are read (server setting {MODEL_ROOT_ENV}); "
                 "a relative path starts there. A `<file>.json` sidecar beside it is used.")
        st.caption(f"Read only under {roots}.")
    labels = st.file_uploader(f"Class names (optional, ≤ {LABELS_UPLOAD_MB} MB): one a line, or a JSON list",
                              type=["txt", "json", "names", "labels"], key=f"sb_um_labels_{gen}")
    with st.expander("Architecture and preprocessing", expanded=False):
        arch = st.selectbox("Architecture", architecture_choices(), **persist("sb_um_arch"),
                            help="auto-detect: found among the torchvision builders from the state_dict's parameter "
                                 "names and shapes. Name it when detection fails; a timm model (timm:NAME) must be "
                                 "named. Type to search.")
        size = st.number_input("Input size (px, 0 = default)", min_value=0, max_value=1024, step=1,
                               **persist("sb_um_size"))
        mean = st.text_input("Mean R, G, B (empty = default)", placeholder=IMAGENET_MEAN_TEXT, **persist("sb_um_mean"))
        std = st.text_input("Std R, G, B (empty = default)", placeholder=IMAGENET_STD_TEXT, **persist("sb_um_std"))
        st.caption(DEFAULTS_TEXT)

    current = user_model()
    error: Optional[str] = None
    has_input = upload is not None if how == FROM_UPLOAD else bool(path_text.strip())
    if has_input:
        fingerprint = (how, upload.file_id if upload is not None else path_text.strip(),
                       labels.file_id if labels is not None else None, arch, int(size), mean.strip(), std.strip(),
                       device)
        if current is None or current.fingerprint != fingerprint:
            if was_attempted(fingerprint):
                error = attempt_error(fingerprint)
            else:
                error = _load(how, upload, path_text, labels, arch, int(size), mean, std, device, fingerprint)
                current = user_model()
    if current is not None:
        st.success(f"{describe(current.handle)} — {current.handle.weights_label}", icon=":material/check_circle:")
        st.caption(notes_line(current.handle))
        st.button("Remove your model", key="sb_um_remove", on_click=_remove, icon=":material/delete:",
                  help="Frees it now; it is also freed when this browser session ends or another model replaces it.")
    elif error is None:
        st.caption("No model of yours loaded yet: upload one (or give its path).")
    return (current.handle if current is not None else None), error


def _load(how, upload, path_text, labels, arch, size, mean, std, device, fingerprint) -> Optional[str]:
    """Load and install the model; the one-line error, or None."""
    try:
        options = make_options(arch, labels_from_upload(labels.getvalue() if labels else None,
                                                        labels.name if labels else ""), size, mean, std)
        name = upload.name if upload is not None else Path(path_text.strip()).name
        with st.spinner(f"Loading {name}…"):
            if upload is not None:
                handle = load_uploaded_model(upload.getvalue(), upload.name, device, options)
                source = f"upload {upload.name}"
            else:
                handle = load_path_model(path_text, device, options)
                source = f"path {path_text.strip()}"
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        if not isinstance(exc, CnnvizError):
            LOG.exception("loading a user model failed", exc_info=exc)
        message = error_message(exc)
        record_failure(fingerprint, message)
        return message
    try:
        install(handle, source, fingerprint)
    except CnnvizError as exc:
        message = error_message(exc)
        record_failure(fingerprint, message)
        return message
    return None
