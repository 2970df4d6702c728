"""Layer facts read from a module: its convolutions and the default CAM layer."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _is_conv(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return True
    if isinstance(module, torch.jit.ScriptModule):  # TorchScript keeps the original class name
        return getattr(module, "original_name", "") == "Conv2d"
    # Leaf submodules of an unflattened torch.export program are graph interpreters, not nn.Conv2d.
    graph = getattr(module, "graph", None)
    if not isinstance(graph, torch.fx.Graph) or any(True for _ in module.children()):
        return False
    return any(n.op == "call_function" and ("convolution" in str(n.target) or "conv2d" in str(n.target))
               for n in graph.nodes)  # placeholders are named after the producing op ("conv2d"): skip them


def conv_layer_paths(model: nn.Module) -> list[str]:
    """Module paths of every 2-D convolution in ``model``, in definition order (e.g. ``features.28``)."""
    return [name for name, m in model.named_modules() if name and _is_conv(m)]


_NOT_A_MAP = (nn.Identity, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def default_cam_layer(model: nn.Module, input_size: int, device: Any = "meta") -> str:
    """The last spatial layer before global pooling: the module, in the order forwards finish,
    whose output is the last ``(N, C, H, W)`` map with ``H * W > 1`` (Grad-CAM's "last
    convolutional layer"; ``layer4`` of a ResNet). ``""`` when no module gives such a map (e.g. a
    TorchScript program, whose submodules cannot be hooked). Adaptive pooling to a fixed size
    (VGG's and AlexNet's ``avgpool``, 7x7 at any input) resamples that map rather than being it, so
    it is never the default."""
    order: list[str] = []
    handles = []

    def make_hook(path: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
                order.append(path)
        return hook

    try:
        for path, module in model.named_modules():
            if path and not isinstance(module, _NOT_A_MAP):
                handles.append(module.register_forward_hook(make_hook(path)))
    except RuntimeError:  # ScriptModules cannot be hooked
        for h in handles:
            h.remove()
        return ""
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    except Exception:  # noqa: BLE001 - a model that cannot run here simply has no default
        return ""
    finally:
        for h in handles:
            h.remove()
    return order[-1] if order else ""
