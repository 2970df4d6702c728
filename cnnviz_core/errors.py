"""Exception types of the engine. Each message is one line a user can act on.

The CLI prints ``str(error)`` on stderr and exits non-zero; the app shows it with ``st.error``.
"""
from __future__ import annotations


class CnnvizError(Exception):
    """Base class: an error caused by the user's input or environment, not by a bug."""

    exit_code = 2


class ImageError(CnnvizError):
    """An image that cannot be used: corrupt, empty, truncated, too large, unsupported."""


class ModelError(CnnvizError):
    """A model that cannot be loaded: unknown name, unsafe or mismatched file, weights missing."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are not in the local cache and cannot be downloaded."""


class ParameterError(CnnvizError, ValueError):
    """An out-of-range or unknown parameter (method name, layer path, target, step count...)."""


class MethodUnavailableError(CnnvizError):
    """A method that does not apply to this model (e.g. CAM without a GAP->linear head)."""


class Cancelled(CnnvizError):
    """Long-running work stopped because its cancel flag was set."""

    exit_code = 130
