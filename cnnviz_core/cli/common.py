"""Argument helpers shared by CLI commands."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional


def add_model_args(parser: argparse.ArgumentParser, *, model_required: bool = True, default_model: Optional[str] = None) -> None:
    """``--model NAME`` and ``--weights default|imagenet|none|PATH`` (plus ``--device``)."""
    parser.add_argument("--model", required=model_required and default_model is None, default=default_model,
                        help="registered model name (see `models`) or a model file (.pt2, TorchScript, state_dict)")
    parser.add_argument("--weights", default="default",
                        help="default (the model's own trained weights), imagenet, none (random init, seed 0) or a state_dict PATH")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")


def weights_arg(value: str) -> Optional[str]:
    """CLI spelling -> :func:`cnnviz_core.load_model` ``weights`` argument (``none`` -> ``None``)."""
    return None if value.strip().lower() == "none" else value


def load_model_from_args(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, weights_arg(args.weights), args.device)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
