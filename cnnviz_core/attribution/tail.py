"""Run only the part of a network AFTER one layer, on a batch of replacement activations
(Ablation-CAM's batched ablations, Desai & Ramaswamy 2020).

Design choice. The activations at the layer are already known from the shared forward, so the part
of the network before the layer must not be recomputed per batch. Hooks cannot skip computation,
so :func:`layer_tail` splits the network's graph with ``torch.fx``: it traces the model once per
``(model, layer)`` with the layer kept as a leaf, keeps the nodes that depend on the layer's output
and builds a ``GraphModule`` ``tail(activation) -> logits`` that calls the SAME submodules (no copy
of any parameter, no change to the model). The split is only used when no value computed before the
layer is used after it, and its output is checked against the real logits before first use.
Tracing happens once per (model, layer), under a lock and the model's lock (``torch.fx`` patches
``nn.Module.__call__`` for the duration of a trace); results are kept in a weak per-model table.

Fallback for graphs that cannot be traced or split: :func:`replaced_output` - a forward hook that
replaces the layer's output with the batch, on the input expanded to the batch size. Correct for
any graph, but the part before the layer then runs once per batch (reported in the result info).
"""
from __future__ import annotations

import operator
import threading
import weakref
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

_TAILS: "weakref.WeakKeyDictionary[nn.Module, dict[str, Optional[fx.GraphModule]]]" = weakref.WeakKeyDictionary()
_TRACE_LOCK = threading.Lock()


class _CutTracer(fx.Tracer):
    """Symbolic tracer that keeps the module at ``layer`` as one node."""

    def __init__(self, layer: str) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer or super().is_leaf_module(m, module_qualified_name)


def _split(model: nn.Module, layer: str) -> Optional[fx.GraphModule]:
    try:
        graph = _CutTracer(layer).trace(model)
    except Exception:  # noqa: BLE001 - any untraceable model falls back to the hook
        return None
    cuts = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(cuts) != 1:
        return None
    downstream = {cuts[0]}
    for node in graph.nodes:
        if any(a in downstream for a in node.all_input_nodes):
            downstream.add(node)
    tail = fx.Graph()
    env = {cuts[0]: tail.placeholder("activation")}
    for node in graph.nodes:
        if node not in downstream or node in env:
            continue
        for arg in node.all_input_nodes:
            if arg not in env:
                if arg.op != "get_attr":  # a value from before the layer is used after it
                    return None
                env[arg] = tail.node_copy(arg)
        env[node] = tail.node_copy(node, lambda a: env[a])
    if not any(n.op == "output" for n in tail.nodes):
        return None
    return fx.GraphModule(model, tail)


def layer_tail(model: nn.Module, layer: str) -> Optional[fx.GraphModule]:
    """``tail(activation_batch) -> logits`` for the network after ``layer``, or None (see module doc).
    Call under the model's lock."""
    with _TRACE_LOCK:
        per_model = _TAILS.setdefault(model, {})
        if layer not in per_model:
            per_model[layer] = _split(model, layer)
        return per_model[layer]


#: Modules whose output is piecewise linear in their input in eval mode (second derivative 0 almost
#: everywhere): affine maps, ReLU-like kernels, max/average pooling, reshapes, eval-mode dropout.
PIECEWISE_LINEAR_MODULES: tuple[type, ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.ReLU, nn.ReLU6,
    nn.LeakyReLU, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout, nn.Dropout2d, nn.Identity)
_PIECEWISE_LINEAR_FUNCTIONS = {
    torch.flatten, torch.relu, F.relu, F.relu6, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d, F.dropout, torch.cat, torch.add, operator.add, operator.getitem, torch.mean}
_PIECEWISE_LINEAR_METHODS = {"view", "reshape", "flatten", "size", "relu", "relu_", "mean", "contiguous", "permute",
                             "transpose", "squeeze", "unsqueeze", "add", "add_"}


def is_piecewise_linear(tail: fx.GraphModule) -> bool:
    """Whether every operation of ``tail`` (a :func:`layer_tail`) is piecewise linear in its input
    (:data:`PIECEWISE_LINEAR_MODULES`, additions, concatenation, reshapes), so that its Hessian w.r.t.
    the layer's output is 0 almost everywhere. Conservative: anything not listed (a product of two
    activations, softmax, GELU, attention) makes it False."""
    for node in tail.graph.nodes:
        if node.op == "call_module" and not isinstance(tail.get_submodule(node.target), PIECEWISE_LINEAR_MODULES):
            return False
        if node.op == "call_function" and node.target not in _PIECEWISE_LINEAR_FUNCTIONS:
            return False
        if node.op == "call_method" and node.target not in _PIECEWISE_LINEAR_METHODS:
            return False
    return True


@contextmanager
def replaced_output(module: nn.Module, replacement: torch.Tensor) -> Iterator[None]:
    """Forwards inside the block see ``replacement`` as ``module``'s output (hook removed on exit)."""

    def hook(_m: nn.Module, _inputs: object, output: object) -> object:
        if isinstance(output, torch.Tensor):
            return replacement
        return type(output)([replacement, *output[1:]])  # type: ignore[index, call-arg]

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
