"""Registry entries for our own models and ZFNet (defined in this package)."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from .registry import ModelSpec, register
from .shapes import ShapesCNN
from .zfnet import PAPER_TOP1_ERROR, PAPER_TOP5_ERROR, ZFNet
from .zoo import IMAGENET_CLASSES

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

_DEFAULT_SHAPES_META = {
    "classes": ["circle", "square", "triangle", "star", "cross", "ring"],
    "input_size": 128,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "head": "multilabel",
    "default_layer": "stage4",
    "arch_kwargs": {"num_classes": 6},
}


def shapes_metadata(name: str) -> dict:
    """The JSON metadata written by :mod:`cnnviz_core.train` next to the weights (defaults if absent)."""
    path = WEIGHTS_DIR / f"{name}.json"
    meta = dict(_DEFAULT_SHAPES_META)
    if path.is_file():
        meta.update(json.loads(path.read_text()))
    return meta


def _register_shapes(name: str, display_name: str, description: str) -> None:
    meta = shapes_metadata(name)
    kwargs = dict(meta["arch_kwargs"])
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    register(
        ModelSpec(
            name=name,
            display_name=display_name,
            family="ours",
            build=partial(ShapesCNN, **kwargs),
            class_names=tuple(meta["classes"]),
            default_layer=meta.get("default_layer", "stage4"),
            input_size=int(meta["input_size"]),
            resize_size=int(meta["input_size"]),
            mean=tuple(meta["mean"]),
            std=tuple(meta["std"]),
            head=meta.get("head", "multilabel"),
            description=description,
            paper="cnnviz (trained by `python -m cnnviz_core.train`)",
            year=2026,
            weights_file=WEIGHTS_DIR / f"{name}.pt",
            facts={"heldout": meta.get("heldout", {}), "train": meta.get("train", {})},
        )
    )


def register_all() -> None:
    """Register shapes-cnn, shapes-cnn-biased and ZFNet."""
    _register_shapes(
        "shapes-cnn",
        "Shapes CNN (ours, bundled)",
        "4-stage CNN + gated fusion + GAP + linear, trained on generated scenes of 6 shapes; needs no download.",
    )
    _register_shapes(
        "shapes-cnn-biased",
        "Shapes CNN, biased (ours, bundled)",
        "The same four conv stages (stride-8 stage4, no fusion), trained on scenes whose corner tag always matches "
        "the class: it learned the tag.",
    )

    register(
        ModelSpec(
            name="zfnet",
            display_name="ZFNet (2013, untrained)",
            family="paper",
            build=ZFNet,
            class_names=IMAGENET_CLASSES,
            default_layer="features.13",
            description="Zeiler & Fergus: AlexNet with 7x7 stride-2 conv1 and 5x5 stride-2 conv2. "
            "No published weights: random initialisation unless a state_dict is given.",
            paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014",
            year=2013,
            facts={"acc1": 100 - PAPER_TOP1_ERROR, "acc5": 100 - PAPER_TOP5_ERROR, "acc_source": "paper, Table 2"},
        )
    )
