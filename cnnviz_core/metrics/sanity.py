"""Model-parameter randomization test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
https://arxiv.org/abs/1810.03292, Sec. 3.1, cascading randomization).

Layers are re-initialized from the top (logits) down, cumulatively, on a DEEP COPY of the model
(the only place the engine copies a model: the randomized network is a different model; the shared
one is never touched). After each step the explanation is recomputed and compared with the original
by Spearman rank correlation and SSIM (both on the map scaled to [0, 1]; gradient maps reduced to
``max_c |.|``, the paper's absolute-value variant). A method that passes the check degrades quickly;
one whose map barely changes is insensitive to what the model learned.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from ..errors import ParameterError
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .causal import saliency_2d

RANDOMIZABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


@dataclass(frozen=True)
class RandomizationStep:
    """After randomizing every layer from the top down to ``layer`` (inclusive)."""

    layer: str
    spearman: float
    ssim: float


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def compare_maps(a, b) -> tuple[float, float]:
    """(Spearman rank correlation, SSIM) of two maps, each reduced to 2-D and scaled to [0, 1]."""
    a, b = _unit(saliency_2d(a).numpy()), _unit(saliency_2d(b).numpy())
    rho = spearmanr(a.ravel(), b.ravel()).statistic if a.std() > 0 and b.std() > 0 else 0.0
    return float(np.nan_to_num(rho)), float(structural_similarity(a, b, data_range=1.0))


def default_layers(model: nn.Module, max_steps: int = 8) -> list[str]:
    """Up to ``max_steps`` conv/linear layers, evenly spread, from the top (output side) down."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][::-1]
    if len(names) <= max_steps:
        return names
    picks = np.linspace(0, len(names) - 1, max_steps).round().astype(int)
    return [names[i] for i in dict.fromkeys(picks)]


def randomization_check(
    handle: ModelHandle, x: torch.Tensor, method: str, target: Optional[int] = None, *,
    layer: Optional[str] = None, layers: Optional[Sequence[str]] = None, seed: int = 0,
    progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, **params,
) -> list[RandomizationStep]:
    """Cascading randomization of ``layers`` (default :func:`default_layers`, top first): at step
    ``i`` every parametrized module from the output down to ``layers[i]`` is re-initialized (its
    ``reset_parameters``, seeded). ``layer``: the CAM layer (default: the model's)."""
    from ..attribution import explain, explain_detailed

    original = explain_detailed(handle, x, method, target, layer, cache=None, **params)[method]
    with handle.lock:
        model = copy.deepcopy(handle.model)
    order = [n for n, m in model.named_modules() if isinstance(m, RANDOMIZABLE)][::-1]
    layers = list(layers) if layers is not None else default_layers(model)
    unknown = [n for n in layers if n not in order]
    if unknown:
        raise ParameterError(f"cannot randomize {unknown[0]!r}: not a conv, linear or batch-norm layer")
    steps: list[RandomizationStep] = []
    done = 0
    for i, stop in enumerate(layers):
        check_cancel(cancel)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            for name in order[done:order.index(stop) + 1]:
                model.get_submodule(name).reset_parameters()
        done = max(done, order.index(stop) + 1)
        randomized = ModelHandle(handle.spec, model, handle.device, f"{handle.weights_label}, randomized to {stop}")
        new = explain(randomized, x, method, original.target, original.layer or layer, scale="none", cache=None,
                      **params)[method]
        steps.append(RandomizationStep(stop, *compare_maps(original.raw, new)))
        report(progress, i + 1, len(layers), f"randomized down to {stop}")
    return steps
