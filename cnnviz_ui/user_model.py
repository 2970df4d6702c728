"""A visitor's own model ("Your model" in the sidebar): loading, privacy and limits.

Privacy: an uploaded model lives only in *this browser session's* ``st.session_state``
(:data:`USER_MODEL_KEY`). It never enters the engine's shared model cache
(``get_engine().model(...)``), is never listed to another session, and is dropped when the session
ends, when it is replaced, or with *Remove*. The upload's bytes are written to a private temporary
folder (``tempfile.mkdtemp``, mode 0700), loaded, and the folder is deleted at once. Results that go
into the shared result cache are keyed by ``handle.key``, which contains the file's sha256, so they
never cross files (and another session can only hit them with the very same file).

Limits: Streamlit's ``server.maxUploadSize`` is one global number (``.streamlit/config.toml``), set to
the largest kind (:data:`MODEL_UPLOAD_MB`); the smaller per-kind limits are enforced here and in
:func:`cnnviz_core.images.load_image` (images: 50 MB).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import streamlit as st

from cnnviz_core import ModelHandle, ParameterError, resolve_device
from cnnviz_core.models import MODEL_SUFFIXES, UserModelOptions, load_user_model, read_labels
from cnnviz_core.paths import MODEL_ROOT_ENV, confine, model_roots

#: Largest model file accepted by upload (bigger ones: a path under the model folder).
MODEL_UPLOAD_MB = 500
#: Largest labels file (also enforced by ``read_labels``).
LABELS_UPLOAD_MB = 2
SESSION_BUDGET_ENV = "CNNVIZ_SESSION_MODEL_MB"
AUTO_ARCH = "auto-detect"
USER_MODEL_KEY = "cnnviz_user_model"
_ATTEMPT_KEY = "cnnviz_user_model_attempt"
#: Methods that need no hooks and no layer: what a TorchScript model (``handle.hookable`` False) can run.
HOOK_FREE_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "occlusion")
IMAGENET_MEAN_TEXT, IMAGENET_STD_TEXT = "0.485, 0.456, 0.406", "0.229, 0.224, 0.225"


@dataclass(frozen=True)
class UserModel:
    """The session's own model: its handle and where it came from (``fingerprint``: the inputs it was
    loaded from, so that the same inputs are not loaded twice)."""

    handle: ModelHandle
    source: str
    fingerprint: tuple


def user_model() -> Optional[UserModel]:
    """This session's model, or None."""
    value = st.session_state.get(USER_MODEL_KEY)
    return value if isinstance(value, UserModel) else None


def clear_user_model() -> None:
    """Forget this session's model (its memory is freed with the last reference)."""
    st.session_state.pop(USER_MODEL_KEY, None)
    st.session_state.pop(_ATTEMPT_KEY, None)


@st.cache_data(show_spinner=False)
def architecture_choices() -> list[str]:
    """``auto-detect``, every torchvision classification builder, then every timm model as ``timm:NAME``."""
    from cnnviz_core.models.catalog import torchvision_names

    names = [AUTO_ARCH] + sorted(torchvision_names())
    try:
        import timm

        names += [f"timm:{n}" for n in timm.list_models()]
    except ImportError:  # timm is optional for the picker
        pass
    return names


def parse_triple(text: str, what: str) -> Optional[tuple[float, float, float]]:
    """``"0.5, 0.5, 0.5"`` -> a triple; empty -> None (the default). One-line ``ParameterError`` else."""
    text = (text or "").strip()
    if not text:
        return None
    parts = [p for p in re.split(r"[,\s;]+", text) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ParameterError(f"{what} must be three numbers R, G, B (e.g. {IMAGENET_MEAN_TEXT}), got {text[:40]!r}") \
            from None
    if len(values) != 3:
        raise ParameterError(f"{what} must be three numbers R, G, B, got {len(values)}")
    return values  # type: ignore[return-value]


def make_options(arch: str, labels: Optional[tuple[str, ...]], input_size: int, mean: str, std: str) -> UserModelOptions:
    """The loader's options from the sidebar fields (0 / empty / auto-detect = not given)."""
    return UserModelOptions(
        arch=None if arch in ("", AUTO_ARCH) else arch, labels=labels,
        input_size=int(input_size) or None, mean=parse_triple(mean, "mean"), std=parse_triple(std, "std"),
    ).validated()


def labels_from_upload(data: Optional[bytes], name: str) -> Optional[tuple[str, ...]]:
    if data is None:
        return None
    if len(data) > LABELS_UPLOAD_MB * 2**20:
        raise ParameterError(f"{name}: labels file is {len(data) / 2**20:.1f} MB, the limit is {LABELS_UPLOAD_MB} MB")
    return read_labels(data, name)


def _safe_name(filename: str) -> str:
    """A file name for the private copy: the upload's base name, only ``[A-Za-z0-9._-]``, its suffix kept."""
    base = Path(filename.replace("\\", "/")).name
    suffix = Path(base).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(base).stem)[:80].lstrip(".") or "model"
    return stem + suffix


def check_model_name(filename: str) -> None:
    if Path(filename).suffix.lower() not in MODEL_SUFFIXES:
        raise ParameterError(f"{filename}: not a model file; expected one of {', '.join(MODEL_SUFFIXES)}")


def load_uploaded_model(data: bytes, filename: str, device: str, options: UserModelOptions) -> ModelHandle:
    """Load an uploaded model file from a private temporary copy, deleted before returning.

    Refuses files over :data:`MODEL_UPLOAD_MB` and names without a model suffix (one line each)."""
    check_model_name(filename)
    if len(data) > MODEL_UPLOAD_MB * 2**20:
        raise ParameterError(
            f"{filename}: file is {len(data) / 2**20:.0f} MB, the upload limit for models is {MODEL_UPLOAD_MB} MB; "
            f"put it under the model folder ({', '.join(map(str, model_roots()))}) and give its path")
    folder = tempfile.mkdtemp(prefix="cnnviz-upload-")  # mode 0700: only this server's user can read it
    try:
        os.chmod(folder, 0o700)
        path = Path(folder) / _safe_name(filename)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return load_user_model(path, resolve_device(device), options=options, display_name=Path(path).name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def resolve_model_path(text: str) -> Path:
    """``text`` confined to the model folders (one-line ``PathNotAllowedError`` outside them)."""
    path = confine(text.strip(), model_roots(), what="model path", env=MODEL_ROOT_ENV)
    check_model_name(path.name)
    if not path.is_file():
        raise ParameterError(f"model path {text.strip()[:120]!r}: no such file under the model folder")
    return path


def load_path_model(text: str, device: str, options: UserModelOptions) -> ModelHandle:
    """Load a model file given by a path under the model folders (a ``<file>.json`` sidecar is read)."""
    path = resolve_model_path(text)
    return load_user_model(path, resolve_device(device), options=options, display_name=path.name)


def session_budget_mb() -> float:
    """What one session's own model may take in memory, twin included (``$CNNVIZ_SESSION_MODEL_MB``,
    default 2048): uploaded models live outside the engine's shared budget, so each counts here."""
    text = os.environ.get(SESSION_BUDGET_ENV, "").strip()
    try:
        value = float(text) if text else 2048.0
    except ValueError:
        raise ParameterError(f"{SESSION_BUDGET_ENV} must be a number of MB, got {text!r}") from None
    return value


def check_session_budget(handle: ModelHandle) -> None:
    """Refuse ``handle`` when it and its BatchNorm-folded twin (built on first batched use, about as
    large again) would exceed this session's budget."""
    need_mb = 2 * handle.nbytes() / 2**20
    if need_mb > session_budget_mb():
        raise ParameterError(f"{handle.spec.display_name} needs about {need_mb:.0f} MB with its inference copy; "
                             f"one session may hold {session_budget_mb():.0f} MB ({SESSION_BUDGET_ENV})")


def install(handle: ModelHandle, source: str, fingerprint: tuple) -> UserModel:
    """Make ``handle`` this session's model (replacing, and so freeing, the previous one)."""
    check_session_budget(handle)
    st.session_state.pop(USER_MODEL_KEY, None)
    model = UserModel(handle, source, fingerprint)
    st.session_state[USER_MODEL_KEY] = model
    st.session_state[_ATTEMPT_KEY] = (fingerprint, None)
    return model


def attempt_error(fingerprint: tuple) -> Optional[str]:
    """The error of the last attempt with these inputs (so a failing file is not reloaded every rerun)."""
    last = st.session_state.get(_ATTEMPT_KEY)
    return last[1] if isinstance(last, tuple) and last[0] == fingerprint else None


def was_attempted(fingerprint: tuple) -> bool:
    last = st.session_state.get(_ATTEMPT_KEY)
    return isinstance(last, tuple) and last[0] == fingerprint


def record_failure(fingerprint: tuple, message: str) -> None:
    st.session_state[_ATTEMPT_KEY] = (fingerprint, message)


def notes_line(handle: ModelHandle) -> str:
    """The loader's notes and the model's facts, in one line."""
    facts = [f"{handle.num_classes} classes", f"{handle.input_size} px input"]
    if handle.default_layer:
        facts.append(f"CAM layer {handle.default_layer}")
    return " · ".join(list(handle.notes) + facts)


def describe(handle: ModelHandle) -> str:
    return handle.spec.display_name or handle.name


def fits(handle: ModelHandle, needs: Sequence[str]) -> Optional[str]:
    """Why ``handle`` cannot serve a page that ``needs`` ``"hooks"`` / ``"conv"``, or None when it can."""
    if "hooks" in needs and not getattr(handle, "hookable", True):
        return (f"{describe(handle)} is a TorchScript program: it cannot be hooked, so this page "
                "(layer activations) cannot use it; load a state_dict or a .pt2 of it, or pick a catalog model.")
    if "conv" in needs and not handle.conv_layers:
        return f"{describe(handle)} has no convolution layers to show on this page."
    return None


__all__ = [
    "AUTO_ARCH", "HOOK_FREE_METHODS", "IMAGENET_MEAN_TEXT", "IMAGENET_STD_TEXT", "LABELS_UPLOAD_MB", "MODEL_UPLOAD_MB",
    "UserModel", "USER_MODEL_KEY", "architecture_choices", "attempt_error", "check_model_name", "check_session_budget",
    "clear_user_model", "describe", "session_budget_mb",
    "fits", "install", "labels_from_upload", "load_path_model", "load_uploaded_model", "make_options",
    "notes_line", "parse_triple", "record_failure", "resolve_model_path", "user_model", "was_attempted",
]
