"""The exact receptive field of a unit: the box of input pixels that can influence it.

How. The set of input pixels a unit depends on is a property of the network's *structure*, not of
its weights or of the image; it is the support of the gradient of the unit w.r.t. the input in a
copy of the network where nothing can cancel or switch off: every convolution and linear layer with
all-positive weights (``1 / fan_in``, no bias), every nonlinearity the identity, max pooling an
equal-weight pooling over the same windows, normalizations the identity. We do not copy the
model: one forward of the real model runs under a thread-local ``TorchFunctionMode``
(:class:`StructuralMode`) that swaps those ops at call time (functional calls included, the model
untouched), in float64, truncated after the unit's layer (``forward_until``); then a one-hot (the
unit, or the support of the target's gradient at the layer) is back-propagated to the input. The
bounding box of the non-zero input gradient is the receptive field, clipped to the image because
padding is not an input pixel. Intermediate padding and strides are handled by the real ops
(the same kernels, strides, paddings, dilations, ceil modes), so the box is exact for any graph
made of such ops - branches, concatenations, dilations, squeeze-excitation (whose global pooling
makes the field the whole image, as it is).

Every gradient-family projection of the unit (saliency, deconvnet, guided backprop, SmoothGrad,
Integrated Gradients) is zero outside the box: the true network has the same paths, with weights
that can only cancel or switch paths off, never add one.

Boxes are ``(top, left, bottom, right)`` in input pixels, bottom and right exclusive; cached per
(model key, layer, input size, seed support).
"""
from __future__ import annotations

import hashlib
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..cache import LRUCache
from ..errors import MethodUnavailableError, ParameterError
from ..hooks import forward_until
from ..models import ModelHandle

Box = tuple[int, int, int, int]
_BOXES = LRUCache(4096)

#: Element-wise (or normalizing) ops replaced by the identity (their own support is the identity).
_IDENTITY = {
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6, F.hardtanh,
    F.hardtanh_, F.hardswish, F.hardsigmoid, F.silu, F.gelu, F.elu, F.elu_, F.selu, F.celu, F.leaky_relu,
    F.leaky_relu_, F.mish, F.softplus, F.sigmoid, F.tanh, torch.sigmoid, torch.tanh, torch.Tensor.sigmoid,
    torch.Tensor.tanh, F.prelu, F.rrelu, F.threshold, F.dropout, F.dropout2d, F.alpha_dropout,
    F.feature_alpha_dropout, torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip, F.batch_norm,
    F.local_response_norm, torch.Tensor.clamp_, torch.Tensor.sigmoid_, torch.dropout,
}
_NORMS = {F.layer_norm, F.group_norm, F.instance_norm}
_CONVS = {torch.conv2d, F.conv2d, torch.conv1d, F.conv1d, torch.conv3d, F.conv3d, F.conv_transpose2d,
          torch.conv_transpose2d}


def _pair(v: Any, n: int = 2) -> tuple[int, ...]:
    return tuple(int(u) for u in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _structural_pool(x: torch.Tensor, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                     real: torch.Tensor) -> torch.Tensor:
    """Equal weights over the max pool's windows (same output shape as ``real``), any dilation / ceil."""
    k, d, p = _pair(kernel), _pair(dilation), _pair(padding)
    s = _pair(stride) if stride not in (None, ()) and stride != [] else k
    c = x.shape[1]
    extra = [max(0, (real.shape[-2 + i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (x.shape[-2 + i] + 2 * p[i]))
             for i in range(2)]
    xp = F.pad(x, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]))
    w = torch.ones(c, 1, *k, dtype=x.dtype, device=x.device) / (k[0] * k[1])
    out = F.conv2d(xp, w, None, s, 0, d, c)
    return out[..., :real.shape[-2], :real.shape[-1]]


def _conv(func: Any, args: tuple, kwargs: dict) -> torch.Tensor:
    """The convolution with all weights ``1 / fan_in`` and no bias (same geometry)."""
    x, w = args[0], _arg(args, kwargs, 1, "weight", None)
    ones = torch.ones(w.shape, dtype=x.dtype, device=x.device) / max(1, w[0].numel())
    rest = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
    return func(x, ones, None, *args[3:], **rest)


class StructuralMode(TorchFunctionMode):
    """Forwards inside the block compute the *structural* network (see the module doc).
    ``convolutions`` counts the convolutions it replaced (0: the graph calls ops it does not know,
    e.g. the aten overloads of an exported program, and the result would not be structural)."""

    def __init__(self) -> None:
        super().__init__()
        self.convolutions = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func in _CONVS:
            self.convolutions += 1
        if func in _IDENTITY:
            return args[0] if args else next(iter(kwargs.values()))
        if func in _CONVS:
            return _conv(func, args, kwargs)
        if func is F.linear:
            x, w = args[0], _arg(args, kwargs, 1, "weight", None)
            return F.linear(x, torch.ones(w.shape, dtype=x.dtype, device=x.device) / w.shape[1])
        if func in (F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d):
            x = args[0]
            kernel = _arg(args, kwargs, 1, "kernel_size", None)
            stride = _arg(args, kwargs, 2, "stride", None)
            padding = _arg(args, kwargs, 3, "padding", 0)
            dilation = _arg(args, kwargs, 4, "dilation", 1)
            ceil_mode = bool(_arg(args, kwargs, 5, "ceil_mode", False))
            real = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
            out = _structural_pool(x, kernel, stride, padding, dilation, ceil_mode, real)
            if func is F.max_pool2d_with_indices or kwargs.get("return_indices") or \
                    (func is F.max_pool2d and len(args) > 6 and args[6]):
                raise ParameterError("max pooling with indices (unpooling) has no structural equivalent")
            return out
        if func in (F.adaptive_max_pool2d, F.adaptive_max_pool2d_with_indices):
            return F.adaptive_avg_pool2d(args[0], _arg(args, kwargs, 1, "output_size", None))
        if func in _NORMS:
            x = args[0]
            if func is F.layer_norm:
                shape = _arg(args, kwargs, 1, "normalized_shape", None)
                dims = tuple(range(-len(_pair(shape, 1)), 0))
            else:
                dims = tuple(range(1, x.ndim))
            return x + x.mean(dim=dims, keepdim=True)
        return func(*args, **kwargs)


def _seed_digest(seed: torch.Tensor) -> str:
    nz = torch.nonzero(seed.detach().to("cpu") != 0)
    return hashlib.blake2b(nz.numpy().tobytes() + str(tuple(seed.shape)).encode(), digest_size=12).hexdigest()


def box_of(support: torch.Tensor) -> Optional[Box]:
    """Bounding box ``(top, left, bottom, right)`` (exclusive) of the non-zero pixels of ``(H, W)``."""
    rows = torch.nonzero(support.any(dim=1))[:, 0]
    cols = torch.nonzero(support.any(dim=0))[:, 0]
    if rows.numel() == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def structural_support(handle: ModelHandle, layer: str, input_hw: tuple[int, int], seeds: torch.Tensor) -> torch.Tensor:
    """``(S, H, W)`` bool: the input pixels each of ``S`` seeds ``(S, C, h, w)`` at ``layer`` depends on."""
    h, w = input_hw
    x = torch.ones(1, 3, h, w, dtype=torch.float64, device=handle.device, requires_grad=True)
    with handle.lock, torch.enable_grad(), StructuralMode() as mode:
        act = forward_until(handle.model, x, layer)
    if mode.convolutions == 0:
        raise RuntimeError("no convolution was seen as a torch function before the layer")
    if tuple(act.shape[1:]) != tuple(seeds.shape[1:]):
        raise ParameterError(f"seed of shape {tuple(seeds.shape[1:])} does not match {layer!r}'s output "
                             f"{tuple(act.shape[1:])}")
    out = []
    for i, seed in enumerate(seeds):
        (g,) = torch.autograd.grad(act, x, grad_outputs=(seed[None] != 0).to(act.dtype),
                                   retain_graph=i < len(seeds) - 1, allow_unused=True)
        out.append(torch.zeros(h, w, dtype=torch.bool) if g is None else (g[0] != 0).any(dim=0).cpu())
    return torch.stack(out)


def receptive_fields(handle: ModelHandle, layer: str, input_hw: tuple[int, int], seeds: torch.Tensor) -> list[Optional[Box]]:
    """The receptive-field box of each seed ``(S, C, h, w)`` (non-zero = the units whose joint field
    is wanted, e.g. a one-hot neuron), clipped to the image; cached. ``None``: no input pixel."""
    keys = [(handle.key, layer, tuple(input_hw), _seed_digest(s)) for s in seeds]
    boxes: list[Optional[Box]] = [None] * len(keys)
    todo = []
    for i, k in enumerate(keys):
        hit = _BOXES.get(k)
        if hit is None:
            todo.append(i)
        else:
            boxes[i] = hit[0]
    if todo:
        try:
            support = structural_support(handle, layer, input_hw, seeds[todo])
        except (RuntimeError, TypeError, NotImplementedError) as exc:  # an op with no float64 / structural form
            raise MethodUnavailableError(f"the receptive field of {layer!r} cannot be traced structurally "
                                         f"({str(exc).splitlines()[0][:100]})") from None
        for i, sup in zip(todo, support):
            boxes[i] = box_of(sup)
            _BOXES.put(keys[i], (boxes[i],))
    return boxes


def neuron_seed(shape: tuple[int, int, int], channel: int, y: int, x: int, device: Any = "cpu") -> torch.Tensor:
    seed = torch.zeros(shape, device=device)
    seed[channel, y, x] = 1
    return seed


def neuron_receptive_field(handle: ModelHandle, layer: str, input_hw: tuple[int, int],
                           fmap_shape: tuple[int, int, int], channel: int, y: int, x: int) -> Optional[Box]:
    """The receptive field of the neuron ``(channel, y, x)`` of ``layer`` (map ``fmap_shape`` (C, h, w))."""
    return receptive_fields(handle, layer, input_hw, neuron_seed(fmap_shape, channel, y, x)[None])[0]


def box_area(box: Optional[Box]) -> int:
    return 0 if box is None else (box[2] - box[0]) * (box[3] - box[1])


def crop(array: Any, box: Box) -> Any:
    """``array[..., top:bottom, left:right]`` (channel-first) of a box."""
    t, l, b, r = box
    return array[..., t:b, l:r]


__all__ = ["Box", "StructuralMode", "box_area", "box_of", "crop", "neuron_receptive_field", "neuron_seed",
           "receptive_fields", "structural_support"]
