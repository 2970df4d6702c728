"""AlexNet, ZFNet, VGG-16/19 (and ResNet-18/50 for context) side by side, computed offline.

Depth, parameters, multiply-adds and the first convolution come from tracing each architecture on
the meta device (:func:`.architecture.trace_layers`, no weights needed). ImageNet accuracy and
GFLOPS come from torchvision's weights metadata (``get_architecture(name).facts``); ZFNet's accuracy is the
paper's (Zeiler & Fergus 2014, Table 2, one convnet, https://arxiv.org/abs/1311.2901) and its GFLOPS
are our computed multiply-adds (torchvision's "GFLOPS" also count one multiply-add as one op).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import torch

from ..models import get_architecture
from .architecture import summarize, trace_layers

#: One sentence per architecture: what it brought.
CONTRIBUTIONS: dict[str, str] = {
    "alexnet": "ReLU, dropout, data augmentation and GPU training let a deep CNN win ImageNet 2012 by a wide margin.",
    "zfnet": "Deconvnet visualizations of every layer led to a 7x7 stride-2 first layer, fixing AlexNet's "
             "aliasing and dead first-layer filters.",
    "vgg16": "Depth from stacks of small 3x3 convolutions only (16 weight layers) beats larger kernels.",
    "vgg19": "The same 3x3 recipe at 19 weight layers; its features became the standard for style transfer.",
    "resnet18": "Identity shortcuts (residual learning) make deep networks trainable; the 18-layer version.",
    "resnet50": "Bottleneck residual blocks (1x1-3x3-1x1) at 50 layers: the standard ImageNet backbone.",
}

DEFAULT_MODELS: tuple[str, ...] = ("alexnet", "zfnet", "vgg16", "vgg19", "resnet18", "resnet50")


@lru_cache(maxsize=32)
def _computed(name: str) -> dict[str, Any]:
    arch = get_architecture(name)
    return summarize(trace_layers(arch.build_empty().eval(), arch.preprocessing.input_size, "meta"))


def architecture_row(name: str) -> dict[str, Any]:
    """One comparison row: ``name``, ``display_name``, ``year``, ``depth`` (weight layers on the
    longest path), ``params`` (int), ``gflops`` (float, torchvision metadata or computed),
    ``gmacs_computed``, ``acc1``/``acc5`` (ImageNet-1k val %, ``None`` if unknown), ``acc_source``,
    ``conv1_kernel``, ``conv1_stride``, ``input_size``, ``contribution`` and ``paper``."""
    spec = get_architecture(name)
    facts, comp = spec.facts, _computed(name)
    gmacs = comp["macs"] / 1e9
    return {
        "name": name,
        "display_name": spec.display_name,
        "year": spec.year,
        "depth": comp["depth"],
        "params": int(facts.get("params") or comp["params"]),
        "gflops": float(facts.get("gflops") or round(gmacs, 3)),
        "gmacs_computed": round(gmacs, 3),
        "acc1": facts.get("acc1"),
        "acc5": facts.get("acc5"),
        "acc_source": facts.get("acc_source", ""),
        "conv1_kernel": comp["conv1_kernel"],
        "conv1_stride": comp["conv1_stride"],
        "input_size": spec.preprocessing.input_size,
        "contribution": CONTRIBUTIONS.get(name, ""),
        "paper": spec.paper,
    }


def architecture_comparison(names: Sequence[str] = DEFAULT_MODELS) -> list[dict[str, Any]]:
    """Rows of :func:`architecture_row` for ``names`` (default: AlexNet, ZFNet, VGG-16, VGG-19,
    ResNet-18, ResNet-50), in that order. Offline, no weights; cached after the first call."""
    return [architecture_row(n) for n in names]
