"""A faster twin of a model for batched forwards without gradients (Score-CAM, occlusion, metrics).

Two exact rewrites (up to float rounding) that pay off on batches:

* eval-mode BatchNorm folded into the convolution before it (``w' = w * g / sqrt(v + eps)``,
  ``b' = (b - m) * g / sqrt(v + eps) + beta``), done by ``torch.fx.experimental.optimization.fuse``
  on a *copy* - the shared model, its modules and its hooks are never touched;
* inputs in channels-last memory format, the layout oneDNN's CPU convolutions prefer.

Measured on 2 CPU cores, ResNet-50, 16 images of 224 px: plain 1226 ms, channels-last 836 ms, both
703 ms (1.74x); VGG-16 (no BatchNorm, so no copy is made): 3200 -> 2413 ms (1.33x).

The twin is used only if its logits match the model's on a probe batch; a model that cannot be
traced (data-dependent control flow) or does not match keeps using itself. Hooks registered on the
shared model do not fire in the twin, so callers that need hooks use the model.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional

import torch
from torch import nn

log = logging.getLogger(__name__)


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fused_twin(model: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, str]:
    """``(module, how)``: a BatchNorm-folded copy of ``model`` when that is possible and matches
    ``model`` on ``probe`` (``how == "bn-folded"``), else ``model`` itself with the reason."""
    if not _has_batchnorm(model):
        return model, "no BatchNorm to fold"
    try:
        from torch.fx.experimental.optimization import fuse

        twin = fuse(copy.deepcopy(model).eval(), inplace=True)
        with torch.inference_mode():
            want, got = model(probe), twin(probe)
    except Exception as exc:  # noqa: BLE001 - any trace failure means: use the model itself
        log.info("no fused twin: %s", exc)
        return model, f"not traceable ({type(exc).__name__})"
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return model, "twin output differs in type or shape"
    scale = float(want.abs().max()) or 1.0
    if not torch.allclose(got, want, rtol=1e-3, atol=1e-4 * scale):
        return model, f"twin logits differ by {float((got - want).abs().max()):.3g}"
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin, "bn-folded"


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory format when it is a 4-D image batch (a no-op otherwise)."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


class InferenceTwin:
    """Lazily built, once per model: call ``twin(x)`` for logits of a batch (no gradients)."""

    def __init__(self, model: nn.Module, input_size: int, device: torch.device) -> None:
        self._model = model
        self._input_size = input_size
        self._device = device
        self._module: Optional[nn.Module] = None
        self.how = "not built yet"

    @property
    def built(self) -> Optional[nn.Module]:
        """The twin module once built, else None (never builds it)."""
        return self._module

    def module(self) -> nn.Module:
        if self._module is None:
            gen = torch.Generator().manual_seed(0)
            probe = torch.randn(2, 3, self._input_size, self._input_size, generator=gen).to(self._device)
            self._module, self.how = fused_twin(self._model, probe)
        return self._module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module()(channels_last(x))
