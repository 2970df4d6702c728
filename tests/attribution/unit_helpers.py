"""Helpers of the unit-target tests: random-weight torchvision models as handles, Pearson r."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torchvision

from cnnviz_core import load_model
from cnnviz_core.models import ModelHandle
from cnnviz_core.bench.models_bench import reference_model as reference_copy  # noqa: F401 - for the parity tests


@lru_cache(maxsize=None)
def tv_handle(arch: str, seed: int = 0) -> ModelHandle:
    """``torchvision.models.get_model(arch, weights=None)`` seeded, wrapped like a loaded ImageNet
    model (the preprocessing and class names of the registered resnet18)."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None)
    spec = load_model("resnet18", weights=None).spec
    return ModelHandle(spec, model, torch.device("cpu"), f"{arch} random seed {seed}")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 and b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def support_box(grad: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (top, left, bottom, right; exclusive) of the non-zero pixels of (..., 3, H, W)."""
    nz = np.abs(np.asarray(grad)).reshape(-1, *np.asarray(grad).shape[-2:]).sum(0) != 0
    rows, cols = np.nonzero(nz.any(1))[0], np.nonzero(nz.any(0))[0]
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
