"""Argument helpers shared by CLI commands: every command that takes ``--model`` takes them all."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import ParameterError


def add_model_args(parser: argparse.ArgumentParser, *, model_required: bool = True, default_model: Optional[str] = None) -> None:
    """``--model NAME|FILE``, ``--weights``, ``--device`` and what goes with a model file:
    ``--arch``, ``--labels``, ``--input-size``, ``--mean``, ``--std``."""
    parser.add_argument("--model", required=model_required and default_model is None, default=default_model,
                        help="catalog name (see `models`; any torchvision classifier; timm:NAME) or a model file: "
                             "state_dict/checkpoint (.pt .pth .bin .ckpt .safetensors), .pt2 (torch.export) or TorchScript")
    parser.add_argument("--weights", default="default",
                        help="default (the model's own trained weights), imagenet, none (random init, seed 0) or a "
                             "state_dict/checkpoint PATH (any head size)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    group = parser.add_argument_group("your model file (also read from a <file>.json sidecar)")
    group.add_argument("--arch", help="architecture of a state_dict: a torchvision name (resnet18) or timm:NAME "
                                      "(default: detected from the parameter names and shapes)")
    group.add_argument("--labels", help="class names: a text file with one name a line, or a JSON list")
    group.add_argument("--input-size", type=int, help="square input size in px (default: the architecture's or 224)")
    group.add_argument("--mean", help="normalization mean R,G,B of [0,1] pixels (default ImageNet 0.485,0.456,0.406)")
    group.add_argument("--std", help="normalization std R,G,B (default ImageNet 0.229,0.224,0.225)")


def weights_arg(value: str) -> Optional[str]:
    """CLI spelling -> :func:`cnnviz_core.load_model` ``weights`` argument (``none`` -> ``None``)."""
    return None if value.strip().lower() == "none" else value


def _triple(text: Optional[str], name: str) -> Optional[tuple[float, float, float]]:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ParameterError(f"--{name} must be three numbers R,G,B, got {text!r}") from None
    if len(values) != 3:
        raise ParameterError(f"--{name} must be three numbers R,G,B, got {text!r}")
    return values  # type: ignore[return-value]


def model_options(args: argparse.Namespace):
    """The :class:`~cnnviz_core.models.UserModelOptions` given by the flags."""
    from ..models import UserModelOptions, read_labels

    labels = None
    if getattr(args, "labels", None):
        path = Path(args.labels)
        if not path.is_file():
            raise ParameterError(f"labels file not found: {path}")
        labels = read_labels(path.read_bytes(), path.name)
    return UserModelOptions(arch=getattr(args, "arch", None), labels=labels, input_size=getattr(args, "input_size", None),
                            mean=_triple(getattr(args, "mean", None), "mean"),
                            std=_triple(getattr(args, "std", None), "std")).validated()


def load_model_from_args(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, weights_arg(args.weights), args.device, options=model_options(args))


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
