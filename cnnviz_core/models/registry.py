"""The model registry: one :class:`ModelSpec` per model the app and CLI know by name.

A spec says how to build the architecture (random init), how to preprocess images for it, its class
names, its default CAM layer, where its trained weights come from and facts to show (params, GFLOPS,
ImageNet accuracy, paper). :func:`readiness` tells whether the weights are here, need a download or
are unavailable, without loading anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
from torch import nn

from ..errors import ModelError

Status = Literal["ready", "needs download", "untrained", "unavailable"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to know about a registered model (no weights loaded)."""

    name: str
    display_name: str
    family: Literal["ours", "imagenet", "paper"]
    build: Callable[[], nn.Module]
    class_names: tuple[str, ...]
    default_layer: str
    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    head: Literal["softmax", "multilabel"] = "softmax"
    description: str = ""
    paper: str = ""
    year: Optional[int] = None
    weights_enum: Any = None  # torchvision WeightsEnum member for "imagenet"
    weights_file: Optional[Path] = None  # our committed state_dict
    facts: dict[str, Any] = field(default_factory=dict)  # params, gflops, acc1, acc5, file_mb


@dataclass(frozen=True)
class Readiness:
    status: Status
    detail: str
    download_mb: float = 0.0


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    if not _REGISTRY:
        from . import ours, zoo

        ours.register_all()
        zoo.register_all()


def list_specs() -> list[ModelSpec]:
    """All registered models: ours first, then the paper/ImageNet zoo in registration order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}") from None


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub / torchvision cache a checkpoint: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def readiness(spec: ModelSpec) -> Readiness:
    """Whether ``spec``'s default weights can be used right now (reads no weights)."""
    if spec.family == "ours":
        if spec.weights_file is not None and spec.weights_file.is_file():
            return Readiness("ready", "bundled weights, no download")
        return Readiness("unavailable", f"bundled weights missing: {spec.weights_file}")
    if spec.weights_enum is None:
        return Readiness("untrained", "no published weights: random initialisation unless you load a state_dict")
    path = hub_checkpoint_path(spec.weights_enum.url)
    size = float(spec.facts.get("file_mb") or 0.0)
    if path.is_file():
        return Readiness("ready", f"ImageNet weights in cache ({path})")
    return Readiness("needs download", f"ImageNet weights ({size:.0f} MB) not in cache: {path}", size)


def _is_conv(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return True
    # Leaf submodules of an unflattened torch.export program are graph interpreters, not nn.Conv2d.
    graph = getattr(module, "graph", None)
    if not isinstance(graph, torch.fx.Graph) or any(True for _ in module.children()):
        return False
    return any("convolution" in str(n.target) or "conv2d" in str(n.target) for n in graph.nodes)


def conv_layer_paths(model: nn.Module) -> list[str]:
    """Module paths of every 2-D convolution in ``model``, in definition order (e.g. ``features.28``)."""
    return [name for name, m in model.named_modules() if name and _is_conv(m)]
