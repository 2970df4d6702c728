"""Deletion and insertion curves (Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for
Explanation of Black-box Models", https://arxiv.org/abs/1806.07421, Sec. 4.1).

Pixels are ranked by the saliency map (most salient first). *Deletion* replaces them, ``step``
pixels at a time, by a substrate and records the target-class probability; a sharp drop (low AUC) is
good. *Insertion* starts from the substrate and puts the pixels back; a fast rise (high AUC) is good.
Substrates, as in the RISE code: deletion -> ``"zeros"`` (the zero *normalized* tensor, i.e. the
dataset-mean colour), insertion -> ``"blur"`` (Gaussian blur, kernel 11, sigma 5, of the input).
``"black"`` (normalized black) is also offered. Probabilities are ``handle.probabilities`` (softmax,
per-class sigmoid for multi-label models). Forwards are batched under ``torch.inference_mode``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .registry import Curve, MetricResult, Paper, Params, register_metric
from .registry import choice as _choice, positive_int

Substrate = Literal["zeros", "black", "blur"]


@dataclass(frozen=True)
class CausalCurve:
    """``fractions[i]``: share of pixels deleted (inserted) after ``i`` steps; ``probs[i]``: target
    probability then; ``auc``: trapezoidal area under ``probs`` over [0, 1]."""

    kind: Literal["deletion", "insertion"]
    fractions: np.ndarray
    probs: np.ndarray
    auc: float
    step: int
    substrate: str


def saliency_2d(saliency: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """``(H, W)`` maps as they are; ``(3, H, W)`` gradient maps -> max over channels of ``|.|``."""
    s = torch.tensor(np.asarray(saliency), dtype=torch.float32)  # a copy: cached maps are read-only
    if s.ndim == 3:
        s = s.abs().amax(dim=0)
    if s.ndim != 2:
        raise ParameterError(f"expected an (H, W) or (3, H, W) saliency map, got shape {tuple(s.shape)}")
    return s


def gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    coords = torch.arange(size, dtype=x.dtype, device=x.device) - size // 2
    k1 = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    k2 = torch.outer(k1, k1)
    kernel = (k2 / k2.sum()).expand(x.shape[1], 1, size, size)
    return F.conv2d(F.pad(x, [size // 2] * 4, mode="reflect"), kernel, groups=x.shape[1])


def substrate_of(handle: ModelHandle, x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "black":
        return handle.normalize(torch.zeros_like(x))
    if kind == "blur":
        return gaussian_blur(x)
    raise ParameterError(f"unknown substrate {kind!r}; choose zeros, black or blur")


def causal_curve(
    handle: ModelHandle, x: torch.Tensor, saliency: Union[np.ndarray, torch.Tensor], target: int,
    kind: Literal["deletion", "insertion"] = "deletion", *, step: Optional[int] = None,
    substrate: Optional[Substrate] = None, batch_size: int = 16,
    progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
) -> CausalCurve:
    """Deletion or insertion curve of ``saliency`` for ``x`` ``(1, 3, H, W)`` (normalized) and class
    ``target``. ``step``: pixels per step (default ``H * W / 100``, i.e. 101 points)."""
    if kind not in ("deletion", "insertion"):
        raise ParameterError(f"unknown curve {kind!r}; choose deletion or insertion")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ParameterError(f"expected a (1, 3, H, W) input, got shape {tuple(x.shape)}")
    target = handle.class_index(target)
    sal = saliency_2d(saliency).to(x.device)
    h, w = x.shape[-2:]
    if sal.shape != (h, w):
        raise ParameterError(f"saliency map {tuple(sal.shape)} does not match the input size {(h, w)}")
    n = h * w
    step = max(1, n // 100) if step is None else int(step)
    if not 1 <= step <= n or batch_size < 1:
        raise ParameterError(f"step must be in 1..{n} and batch_size >= 1, got {step}, {batch_size}")
    substrate = substrate or ("zeros" if kind == "deletion" else "blur")
    x = x.detach()
    start, finish = (x, substrate_of(handle, x, substrate)) if kind == "deletion" else \
        (substrate_of(handle, x, substrate), x)
    rank = torch.empty(n, dtype=torch.long, device=x.device)
    rank[sal.flatten().argsort(descending=True, stable=True)] = torch.arange(n, device=x.device)
    rank = rank.view(1, 1, h, w)
    steps = -(-n // step)
    probs = torch.empty(steps + 1)
    for first in range(0, steps + 1, batch_size):
        check_cancel(cancel)
        counts = torch.arange(first, min(steps + 1, first + batch_size), device=x.device) * step
        replaced = rank < counts.view(-1, 1, 1, 1)  # (B, 1, H, W): the first k pixels by rank
        batch = torch.where(replaced, finish, start)
        probs[first:first + len(counts)] = handle.probabilities(handle.batch_logits(batch))[:, target].float().cpu()
        report(progress, min(steps + 1, first + batch_size), steps + 1, f"{kind} curve")
    fractions = np.minimum(np.arange(steps + 1) * step, n) / n
    p = probs.numpy()
    auc = float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(fractions)))
    return CausalCurve(kind, fractions, p, auc, step, substrate)


def deletion(handle: ModelHandle, x: torch.Tensor, saliency, target: int, **kwargs) -> CausalCurve:
    """Deletion curve (RISE): lower AUC = the map found what the model needs."""
    return causal_curve(handle, x, saliency, target, "deletion", **kwargs)


def insertion(handle: ModelHandle, x: torch.Tensor, saliency, target: int, **kwargs) -> CausalCurve:
    """Insertion curve (RISE): higher AUC = the map found what the model needs."""
    return causal_curve(handle, x, saliency, target, "insertion", **kwargs)


# ---- registered metrics -----------------------------------------------------------------------------
RISE = Paper("Petsiuk, Das & Saenko", 2018, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
             "https://arxiv.org/abs/1806.07421")


@dataclass(frozen=True)
class CausalParams(Params):
    """``step`` pixels per step (default ``H * W / 100``); ``substrate`` ``zeros``, ``black`` or
    ``blur`` (default: zeros for deletion, blur for insertion); ``batch_size`` images per forward."""

    step: Optional[int] = None
    substrate: Optional[str] = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.step is not None:
            self._set("step", positive_int("step", self.step))
        if self.substrate is not None:
            self._set("substrate", _choice("substrate", self.substrate, ("zeros", "black", "blur")))
        self._set("batch_size", positive_int("batch_size", self.batch_size))


def _registered_curve(kind: Literal["deletion", "insertion"], handle, x, saliency_map, target, params: CausalParams,
                      progress, cancel) -> MetricResult:
    c = causal_curve(handle, x, saliency_map, target, kind, step=params.step,
                     substrate=params.substrate,  # type: ignore[arg-type]
                     batch_size=params.batch_size, progress=progress, cancel=cancel)
    done = "deleted" if kind == "deletion" else "inserted"
    return MetricResult(kind, c.auc, kind == "insertion",
                        curves={kind: Curve(c.fractions, c.probs, f"share of pixels {done}", "target probability")},
                        details={"step": c.step, "substrate": c.substrate})


@register_metric(
    "deletion", display_name="Deletion AUC", paper=RISE, reference="TorchCAM (DeletionInsertionMetric), RISE code",
    higher_is_better=False, value_range="[0, 1]", cost="101 forwards (step = 1% of the pixels)",
    needs=("forwards",), params=CausalParams, long_running=True,
)
def deletion_metric(handle, x: torch.Tensor, saliency_map, target, params: CausalParams = CausalParams(),
                    progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *, explain=None,
                    mask=None) -> MetricResult:
    """Area under the target probability as the most salient pixels are deleted (:func:`deletion`)."""
    return _registered_curve("deletion", handle, x, saliency_map, target, params, progress, cancel)


@register_metric(
    "insertion", display_name="Insertion AUC", paper=RISE, reference="TorchCAM (DeletionInsertionMetric), RISE code",
    higher_is_better=True, value_range="[0, 1]", cost="101 forwards (step = 1% of the pixels)",
    needs=("forwards",), params=CausalParams, long_running=True,
)
def insertion_metric(handle, x: torch.Tensor, saliency_map, target, params: CausalParams = CausalParams(),
                     progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *, explain=None,
                     mask=None) -> MetricResult:
    """Area under the target probability as the most salient pixels are inserted (:func:`insertion`)."""
    return _registered_curve("insertion", handle, x, saliency_map, target, params, progress, cancel)
