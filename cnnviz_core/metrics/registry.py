"""The metric registry: every evaluation metric is registered ONCE, with its metadata, in definition order.

``METRICS`` (key -> :class:`Metric`) is what the UI, the CLI and the tests enumerate. A metric is a
function ``compute(handle, x, saliency_map, target, params, progress=None, cancel=None, *,
explain=None, mask=None) -> MetricResult`` decorated with :func:`register_metric`:

* ``x``: the normalized ``(1, 3, H, W)`` input; ``saliency_map``: the map being judged, ``(H, W)``
  (CAM, perturbation and region families) or ``(3, H, W)`` (gradient family), at input resolution;
  ``target``: the class the map explains; ``params``: an instance of the metric's own frozen
  parameter dataclass (``Metric.params_type``, validated on construction, :class:`ParameterError`
  on a bad value).
* ``explain`` (metrics whose ``needs`` has ``"explain"``): an :data:`Explainer`, a callable
  ``explain(model, x, target) -> map`` that recomputes the map with the same method for another
  input (max-sensitivity), another class (random logit) or a randomized copy of the model (MPRT
  variants). :func:`method_explainer` builds one from :func:`cnnviz_core.attribution.explain`.
* ``mask`` (``needs`` has ``"mask"``): the object's ``(H, W)`` boolean ground-truth mask.

Forwards of perturbed inputs are batched on ``handle.batch_logits`` (the BatchNorm-folded,
channels-last twin, under ``torch.inference_mode``). Randomness is seeded (``seed`` parameter) and
drawn from private generators, never from the global ones, except where a reference library's
convention needs the global torch generator (re-initialization of randomized layers), which is then
forked and restored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError
from ..typed_params import (NoParams, Paper, Params, boolean, check_flat_params, choice, integer,  # noqa: F401
                            positive_int, real, real_tuple, resolve_keys, resolve_params)

#: ``explain(model, x, target) -> map``: the judged method's map of ``x`` ``(1, 3, H, W)`` for
#: class ``target`` under ``model`` (the handle's own model, or a randomized copy of it), as a numpy
#: array or tensor of the same shape and scale as the judged map.
Explainer = Callable[[nn.Module, torch.Tensor, int], Union[np.ndarray, torch.Tensor]]

#: What a metric needs besides the map: ``"forwards"`` (batched forwards of perturbed inputs),
#: ``"explain"`` (an :data:`Explainer`), ``"model_copy"`` (a randomized deep copy of the model, in
#: memory once), ``"sparse_solve"`` (sparse linear systems on the CPU), ``"mask"`` (a ground-truth mask).
NEEDS: dict[str, str] = {
    "forwards": "forwards of perturbed inputs",
    "explain": "re-explains with the same method",
    "model_copy": "a randomized copy of the model",
    "sparse_solve": "sparse linear solves (CPU)",
    "mask": "a ground-truth object mask",
}


# ---- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """One curve of a metric: ``y[i]`` at ``x[i]``."""

    x: np.ndarray
    y: np.ndarray
    x_label: str
    y_label: str


@dataclass(frozen=True)
class MetricResult:
    """``value``: the metric's number for this map (see ``Metric.higher_is_better``); ``curves``:
    named curves behind it (ROAD's MoRF and LeRF, deletion, MPRT per layer); ``maps``: maps the
    metric computed that are worth showing (the off-class map of the random-logit test, the
    denoised maps of smooth MPRT); ``details``: other numbers (probabilities, the chosen class...)."""

    key: str
    value: float
    higher_is_better: bool
    curves: dict[str, Curve] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


Output = ("probability", "logit")


# ---- metrics ----------------------------------------------------------------------------------------
Compute = Callable[..., MetricResult]


@dataclass(frozen=True, kw_only=True)
class Metric:
    """Metadata + implementation of one metric (keyword-only fields).

    ``reference``: the library (and its class or function) the metric is checked against;
    ``higher_is_better``: direction of ``MetricResult.value``; ``value_range``: its range in words;
    ``cost``: forwards (and other work) per map with the default parameters; ``needs``: keys of
    :data:`NEEDS`; ``long_running``: takes progress and cancel callbacks."""

    key: str
    display_name: str
    paper: Paper
    reference: str
    higher_is_better: bool
    value_range: str
    cost: str
    needs: tuple[str, ...]
    compute: Compute
    params_type: type = NoParams
    long_running: bool = False
    description: str = ""

    @property
    def params(self) -> dict[str, Any]:
        """Accepted keyword parameters and their defaults."""
        return {f.name: f.default for f in dataclasses.fields(self.params_type)}

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: dict[str, Metric] = {}


def register_metric(
    key: str, *, display_name: str, paper: Paper, reference: str, higher_is_better: bool, value_range: str,
    cost: str, needs: Sequence[str], params: type = NoParams, long_running: bool = False, description: str = "",
) -> Callable[[Compute], Compute]:
    """Decorator registering ``compute`` under ``key`` (each key exactly once, in definition order)."""
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"metric {key!r}: unknown need {unknown[0]!r}")

    def decorate(compute: Compute) -> Compute:
        if key in METRICS:
            raise ValueError(f"metric {key!r} registered twice")
        METRICS[key] = Metric(
            key=key, display_name=display_name, paper=paper, reference=reference,
            higher_is_better=higher_is_better, value_range=value_range, cost=cost, needs=tuple(needs),
            compute=compute, params_type=params, long_running=long_running,
            description=description or (compute.__doc__ or "").strip().split("\n")[0])
        return compute

    return decorate


def resolve_metrics(metrics: Union[str, Sequence[str]]) -> list[Metric]:
    """Validate metric keys (one key, a comma list or a sequence) -> Metrics, order kept, no duplicates."""
    return resolve_keys(metrics, METRICS, "metric")


def metric_params(metric: Metric, params: Mapping[str, Any], options: Optional[Mapping[str, Any]] = None) -> Params:
    """The metric's typed parameters: defaults, overridden by the flat ``params`` it has a field for,
    overridden by ``options[metric.key]`` (an instance of ``metric.params_type`` or a dict)."""
    return resolve_params(metric.key, metric.params_type, params, options)


def evaluate(
    handle, x: torch.Tensor, saliency_map, target: Union[int, str], metrics: Union[str, Sequence[str]], *,
    explain: Optional[Explainer] = None, mask: Optional[np.ndarray] = None, progress=None, cancel=None,
    options: Optional[Mapping[str, Any]] = None, **params: Any,
) -> dict[str, MetricResult]:
    """``{key: MetricResult}`` of several metrics for one map (flat ``params`` go to every metric
    that has a field of that name, ``options`` per metric). Unknown flat parameters raise."""
    chosen = resolve_metrics(metrics)
    check_flat_params(params, list(METRICS.values()), "metric parameter")
    typed = {m.key: metric_params(m, params, options) for m in chosen}
    return {m.key: m.compute(handle, x, saliency_map, target, typed[m.key], progress, cancel, explain=explain,
                             mask=mask) for m in chosen}


# ---- helpers shared by the metric modules ---------------------------------------------------------
def check_input(handle, x: torch.Tensor, saliency_map, target) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(x, map, target)``: ``x`` detached ``(1, 3, H, W)``, the map as a float32 tensor on ``x``'s
    device, ``(H, W)`` or ``(3, H, W)`` matching ``x``, and the validated class index."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ParameterError(f"expected a (1, 3, H, W) input, got shape {tuple(getattr(x, 'shape', ()))}")
    s = torch.as_tensor(np.array(saliency_map, dtype=np.float32) if not isinstance(saliency_map, torch.Tensor)
                        else saliency_map.detach().float()).to(x.device)
    h, w = x.shape[-2:]
    if s.shape not in ((h, w), (3, h, w)):
        raise ParameterError(f"saliency map {tuple(s.shape)} must be (H, W) or (3, H, W) of the input's size {(h, w)}")
    if not torch.isfinite(s).all():
        raise ParameterError("saliency map has NaN or infinite values")
    return x.detach(), s, handle.class_index(target)


def need(metric: str, what: str, value: Any) -> Any:
    if value is None:
        raise ParameterError(f"metric {metric} needs {what}")
    return value


def scores(handle, logits: torch.Tensor, target: int, output: str) -> torch.Tensor:
    """The target's score per row of ``logits``: probability (``handle.probabilities``) or logit, float64 on CPU."""
    out = handle.probabilities(logits.float()) if output == "probability" else logits.float()
    return out[:, target].double().cpu()


def batched_scores(handle, batches, target: int, output: str, *, total: int, label: str,
                   progress=None, cancel=None) -> torch.Tensor:
    """Scores of the target over an iterable of input batches (each a ``(B, 3, H, W)`` tensor)."""
    from ..progress import check_cancel, report

    parts, done = [], 0
    for batch in batches:
        check_cancel(cancel)
        parts.append(scores(handle, handle.batch_logits(batch), target, output))
        done += len(batch)
        report(progress, done, total, label)
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)


def as_numpy(m: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    return m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)


def method_explainer(handle, method: str, *, layer: Optional[str] = None, **params: Any) -> Explainer:
    """An :data:`Explainer` running the attribution method ``method`` (same ``layer`` and
    parameters as the judged map, default ``scale``), uncached: ``explain(model, x, target)``
    explains with ``handle`` when ``model`` is ``handle.model``, else with a handle wrapping
    ``model`` (a randomized copy), rebuilt whenever the copy's weights were changed in place.
    Gradients are enabled for the call (reference libraries call explanation functions under
    ``torch.no_grad``)."""
    from ..attribution import explain as attribution_explain
    from ..models import ModelHandle

    wrapped: dict[str, Any] = {}

    def version(model: nn.Module) -> tuple[int, int]:
        tensors = list(model.parameters()) + list(model.buffers())
        return id(model), sum(t._version for t in tensors)

    def run(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
        if model is handle.model:
            h = handle
        else:
            key = version(model)
            h = wrapped.get("handle") if wrapped.get("key") == key else None
            if h is None:
                h = ModelHandle(handle.spec, model, handle.device, f"{handle.weights_label}, randomized",
                                hookable=handle.hookable, max_batch=handle.max_batch)
                wrapped.update(key=key, handle=h)
        with torch.enable_grad():  # gradient methods still work when the caller runs under no_grad
            return attribution_explain(h, x, method, target, layer, cache=None, **params)[method]

    return run
