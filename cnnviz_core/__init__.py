"""cnnviz_core: the engine behind the cnnviz dashboard - how convolutional networks see.

Public API (usable without Streamlit)::

    from cnnviz_core import load_model, load_image
    handle = load_model("shapes-cnn")            # bundled, no download
    mine = load_model("finetuned.pth")            # your state_dict: architecture and head size detected
    x = handle.preprocess(load_image("cat.jpg"))  # (1, 3, H, W) normalized
    handle.predict(x, topk=5)                     # [(class_index, class_name, probability), ...]
"""
from __future__ import annotations

from .device import available_devices, resolve_device
from .errors import (
    Cancelled, CnnvizError, ImageError, MethodUnavailableError, ModelError, ParameterError,
    WeightsUnavailableError,
)
from .images import SAMPLES, image_digest, load_image, sample_image
from .models import ModelHandle, UserModelOptions, entries, get_entry, load_model

__version__ = "0.1.0"

# Heavier parts are imported on first use: ``cnnviz_core.explain`` -> ``cnnviz_core.attribution``.
_LAZY = {
    "explain": "attribution",
    "explain_detailed": "attribution",
    "METHODS": "attribution",
    "Engine": "engine",
    "CancelToken": "progress",
    "Progress": "progress",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CancelToken", "Engine", "METHODS", "Progress", "explain", "explain_detailed",
    "Cancelled", "CnnvizError", "ImageError", "MethodUnavailableError", "ModelError", "ModelHandle",
    "ParameterError", "SAMPLES", "UserModelOptions", "WeightsUnavailableError", "available_devices", "entries",
    "get_entry", "image_digest", "load_image", "load_model", "resolve_device",
    "sample_image",
]
