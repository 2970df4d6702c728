"""Pick the torch device: CUDA, then Apple MPS, then CPU; overridable with ``CNNVIZ_DEVICE``."""
from __future__ import annotations

import os

import torch

from .errors import ParameterError

ENV_VAR = "CNNVIZ_DEVICE"


def available_devices() -> list[str]:
    """Device names usable here, best first (always ends with ``"cpu"``)."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> ``$CNNVIZ_DEVICE`` if set, else the best available device.

    An explicit name must be available here, otherwise :class:`ParameterError`.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        name = os.environ.get(ENV_VAR, "").strip().lower() or available_devices()[0]
    base = name.split(":")[0]
    if base not in available_devices():
        raise ParameterError(f"device {name!r} is not available here; choose one of {available_devices()}")
    return torch.device(name)
