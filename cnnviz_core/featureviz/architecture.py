"""Per-layer facts of a network, computed by tracing one forward: output shape, parameters,
multiply-adds, receptive field and jump (cumulative stride); and the classic architectures compared.

Receptive-field arithmetic (Dumoulin & Visin, "A guide to convolution arithmetic for deep learning",
2016, https://arxiv.org/abs/1603.07285; Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019, https://distill.pub/2019/computing-receptive-fields/):
for a layer with kernel ``k`` (dilation ``d``), stride ``s`` and padding ``p`` applied to a map with
receptive field ``r``, jump ``j`` and first-centre ``c`` (input pixels),
``r' = r + d (k - 1) j``, ``j' = j s``, ``c' = c + (d (k - 1) / 2 - p) j``.

The geometry is tracked per tensor, so branches (ResNet shortcuts) compose along their own path;
a tensor made by a functional op between modules (``torch.flatten``, ``torch.cat``) takes the
geometry of the most recently computed module output. Depth counts conv/linear layers on the same
path (so ResNet-18's 1x1 shortcut convolutions do not add to its 18).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional

import torch
from torch import nn

from ..errors import MethodUnavailableError
from ..models import ModelHandle, get_architecture

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_WEIGHTED = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Geometry:
    """Receptive field ``rf`` and ``jump`` in input pixels (``None``: the whole image), centre of
    the first output unit ``start``, and ``depth`` = conv/linear layers on the path so far."""

    rf: Optional[float] = 1.0
    jump: Optional[float] = 1.0
    start: Optional[float] = 0.5
    depth: int = 0


def _pair(v: Any) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def _window(geo: Geometry, k: int, s: int, p: int, d: int = 1) -> Geometry:
    if geo.rf is None:
        return geo
    extent = d * (k - 1)
    return replace(geo, rf=geo.rf + extent * geo.jump, jump=geo.jump * s,
                   start=geo.start + (extent / 2 - p) * geo.jump)


def propagate(module: nn.Module, geo: Geometry, in_hw: int, out_hw: int) -> Geometry:
    """The geometry after ``module`` (pointwise modules keep it)."""
    if isinstance(module, _SPATIAL):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        d = _pair(getattr(module, "dilation", 1))
        geo = _window(geo, k, s, _pair(module.padding) if not isinstance(module.padding, str) else (k - 1) // 2, d)
    elif isinstance(module, _ADAPTIVE) and in_hw != out_hw and out_hw > 0:
        s = in_hw // out_hw
        geo = _window(geo, math.ceil(in_hw / out_hw) if out_hw > 1 else in_hw, max(s, 1), 0)
    elif isinstance(module, nn.Linear):
        geo = replace(geo, rf=None, jump=None, start=None)
    if isinstance(module, _WEIGHTED):
        geo = replace(geo, depth=geo.depth + 1)
    return geo


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one call for one image (conv and linear layers; others count 0)."""
    per_image = output.numel() // max(1, output.shape[0])
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


@contextmanager
def _trace(model: nn.Module, x: torch.Tensor) -> Iterator[list[dict[str, Any]]]:
    """Hooks on every leaf module (and container with its own parameters, e.g. ConvNeXt's layer
    scale) recording one row per call (removed on exit)."""
    rows: list[dict[str, Any]] = []
    geos: dict[int, tuple[torch.Tensor, Geometry]] = {id(x): (x, Geometry())}
    last: list[Geometry] = [Geometry()]
    seen: set[int] = set()

    def hook(path: str):
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            out = output if isinstance(output, torch.Tensor) else output[0]
            inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            geo_in = geos.get(id(inp), (None, last[0]))[1] if inp is not None else last[0]
            hw_in = inp.shape[-1] if inp is not None and inp.ndim == 4 else 0
            hw_out = out.shape[-1] if out.ndim == 4 else 0
            leaf = next(module.children(), None) is None
            geo = propagate(module, geo_in, hw_in, hw_out) if leaf else last[0]
            geos[id(out)] = (out, geo)
            last[0] = geo
            first_call = id(module) not in seen
            seen.add(id(module))
            rows.append({
                "path": path, "type": type(module).__name__, "output_shape": tuple(out.shape[1:]),
                "params": sum(p.numel() for p in module.parameters(recurse=False)) if first_call else 0,
                "macs": layer_macs(module, out),
                "kernel": _pair(module.kernel_size) if isinstance(module, _SPATIAL) else None,
                "stride": _pair(module.stride) if isinstance(module, _SPATIAL) else None,
                "rf": None if geo.rf is None else int(round(geo.rf)),
                "jump": None if geo.jump is None else int(round(geo.jump)),
                "start": geo.start, "depth": geo.depth,
            })

        return record

    handles = []
    try:
        for path, module in model.named_modules():
            leaf = next(module.children(), None) is None
            if path and (leaf or next(module.parameters(recurse=False), None) is not None):
                handles.append(module.register_forward_hook(hook(path)))
        yield rows
    finally:
        for h in handles:
            h.remove()


def trace_layers(model: nn.Module, input_size: int, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """One row per executed leaf-module call of ``model`` on a ``(1, 3, S, S)`` input: ``path``,
    ``type``, ``output_shape`` (C, H, W) without batch, ``params`` (counted at a module's first
    call), ``macs`` (multiply-adds per image), ``kernel`` and ``stride`` (conv/pool layers, else
    ``None``), ``rf`` and ``jump`` (input pixels, ``None`` once the
    whole image is seen, i.e. after a linear layer), ``start`` and ``depth``.

    Works on the meta device (no memory, no arithmetic) and on real models (no gradients).
    """
    x = torch.zeros(1, 3, input_size, input_size, device=device)
    with torch.no_grad(), _trace(model, x) as rows:
        model(x)
    return rows


def layer_table(handle: ModelHandle, input_size: Optional[int] = None) -> list[dict[str, Any]]:
    """:func:`trace_layers` for a loaded model at its input size (or ``input_size``).

    Catalog architectures are traced on a weightless copy built on the meta device (the shared
    model is not touched); programs (your ``.pt2``/TorchScript files) are traced for real under
    ``handle.lock``.
    """
    size = int(input_size or handle.input_size)
    if handle.spec.architecture:
        copy = get_architecture(handle.spec.architecture).build_empty(handle.num_classes)
        return trace_layers(copy.eval(), size, "meta")
    try:
        with handle.lock:
            return trace_layers(handle.model, size, handle.device)
    except (AttributeError, RuntimeError) as exc:
        raise MethodUnavailableError(f"cannot trace layers of {handle.name!r}: {str(exc)[:120]}") from None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of a layer table: ``params``, ``macs``, ``depth`` (weight layers on the longest path),
    first conv's ``conv1_kernel``/``conv1_stride`` (``None`` without convs)."""
    conv1 = next((r for r in rows if r["type"] == "Conv2d"), None)
    return {
        "params": sum(r["params"] for r in rows),
        "macs": sum(r["macs"] for r in rows),
        "depth": max((r["depth"] for r in rows), default=0),
        "conv1_kernel": conv1["kernel"] if conv1 else None,
        "conv1_stride": conv1["stride"] if conv1 else None,
    }
