"""Exception types of the engine. Each message is one line a user can act on.

The CLI prints ``str(error)`` on stderr and exits non-zero; the app shows it with ``st.error``.
"""
from __future__ import annotations

import re

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x1f\x7f-\x9f]")


def one_line(text: str, limit: int = 400) -> str:
    """``text`` as one printable line: terminal escape sequences and control characters removed,
    runs of white space collapsed, cut to ``limit`` characters. Every message a user sees passes here."""
    line = " ".join(_ESCAPES.sub(" ", str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


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


class PathNotAllowedError(ParameterError):
    """A server path outside the configured roots (``CNNVIZ_DATA_ROOT`` / ``CNNVIZ_MODEL_ROOT``),
    or one with ``..``, a NUL byte, or nothing in it."""
