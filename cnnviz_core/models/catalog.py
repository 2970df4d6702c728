"""The catalog: the one place that registers models, each an architecture with its default weights.

Registered (listed in the app and by ``models``): our bundled shapes models, ZFNet, and a curated
torchvision zoo. Resolved on demand by name (not listed): every other torchvision classification
builder (``regnet_y_400mf``) and every timm model (``timm:convnext_tiny``, built with
``pretrained=False``; timm weights come from a user's file). Registration is lazy, runs once under a
lock, and this module imports nothing that imports it.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from ..errors import ModelError
from .architectures import Architecture, Preprocessing
from .layers import default_cam_layer
from .shapes import ShapesCNN
from .sources import Bundled, ImageNetCache, RandomInit, Readiness, WeightsSource
from .zfnet import PAPER_TOP1_ERROR, PAPER_TOP5_ERROR, ZFNet

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
TIMM_PREFIX = "timm:"
IMAGENET_CLASSES: tuple[str, ...] = tuple(get_model_weights("resnet18").DEFAULT.meta["categories"])


@dataclass(frozen=True)
class ModelEntry:
    """A catalog model: an architecture and the source of its default weights."""

    architecture: Architecture
    default_source: WeightsSource
    listed: bool = True

    @property
    def name(self) -> str:
        return self.architecture.name

    @property
    def display_name(self) -> str:
        return self.architecture.display_name

    def readiness(self) -> Readiness:
        return self.default_source.readiness()

    @property
    def imagenet(self) -> Optional[ImageNetCache]:
        return self.default_source if isinstance(self.default_source, ImageNetCache) else None

    def available_weights(self) -> Optional[str]:
        """``"default"`` when the default weights can be used now, else ``None`` (random init):
        for views that must never wait for a download."""
        return "default" if self.readiness().status == "ready" else None


# ---- torchvision --------------------------------------------------------------------------------
# name -> (default CAM layer, year, paper) for the listed zoo. The layer is the last spatial feature
# map, as in the Grad-CAM paper; for DenseNet the final norm (its ReLU is functional).
ZOO: dict[str, tuple[str, int, str]] = {
    "alexnet": ("features.11", 2012, "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NIPS 2012"),
    "vgg16": ("features.29", 2014, "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"),
    "vgg19": ("features.35", 2014, "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"),
    "googlenet": ("inception5b", 2014, "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"),
    "resnet18": ("layer4", 2015, "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"),
    "resnet50": ("layer4", 2015, "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"),
    "squeezenet1_1": ("features.12", 2016, "Iandola et al., SqueezeNet, 2016"),
    "densenet121": ("features.norm5", 2016, "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"),
    "mobilenet_v3_large": ("features.16", 2019, "Howard et al., Searching for MobileNetV3, ICCV 2019"),
    "efficientnet_b0": ("features.8", 2019, "Tan & Le, EfficientNet, ICML 2019"),
    "convnext_tiny": ("features.7", 2022, "Liu et al., A ConvNet for the 2020s, CVPR 2022"),
}

# Builder arguments that make a random-init model accept the published state_dict (torchvision's
# builders set these themselves when given weights), and the fix-up they apply after loading.
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": True, "transform_input": True, "init_weights": False},
    "inception_v3": {"aux_logits": True, "transform_input": True, "init_weights": False},
}


def _drop_aux_heads(model: nn.Module) -> nn.Module:
    """What torchvision's GoogLeNet / Inception builders do after loading published weights."""
    model.aux_logits = False
    for name in ("aux1", "aux2", "AuxLogits"):
        if hasattr(model, name):
            setattr(model, name, None)
    return model


def torchvision_names() -> list[str]:
    """Every torchvision classification builder."""
    return list_models(module=torchvision.models)


def _facts(weights: Any) -> dict[str, Any]:
    meta = weights.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    return {
        "params": meta.get("num_params"), "gflops": meta.get("_ops"),
        "acc1": metrics.get("acc@1"), "acc5": metrics.get("acc@5"),
        "acc_source": f"torchvision {torchvision.__version__} weights metadata ({weights})",
        "file_mb": meta.get("_file_size"), "weights": str(weights),
    }


def torchvision_architecture_stub(name: str) -> Architecture:
    """The torchvision builder ``name`` with nothing else looked up (for shape signatures)."""
    return Architecture(name=name, display_name=name, builder=partial(get_model, name, weights=None,
                                                                      **_BUILD_KWARGS.get(name, {})),
                        class_names=IMAGENET_CLASSES, default_layer="",
                        finish=_drop_aux_heads if name in _BUILD_KWARGS else None)


def _torchvision_entry(name: str, *, listed: bool) -> ModelEntry:
    weights = get_model_weights(name).DEFAULT
    transform = weights.transforms()
    stub = torchvision_architecture_stub(name)
    layer, year, paper = ZOO.get(name, ("", None, ""))
    prep = Preprocessing(input_size=int(transform.crop_size[0]), resize_size=int(transform.resize_size[0]),
                         mean=tuple(transform.mean), std=tuple(transform.std))
    layer = layer or default_cam_layer(stub.build_empty(), prep.input_size)
    arch = Architecture(
        name=name, display_name=f"{name} (ImageNet, torchvision)", builder=stub.builder,
        class_names=tuple(weights.meta["categories"]), default_layer=layer, preprocessing=prep, origin="torchvision",
        description=f"torchvision {name}, {weights} weights", paper=paper, year=year, facts=_facts(weights),
        finish=stub.finish,
    )
    return ModelEntry(arch, ImageNetCache(weights), listed)


# ---- timm ---------------------------------------------------------------------------------------
def _timm_entry(name: str) -> ModelEntry:
    try:
        import timm
    except ImportError:
        raise ModelError("timm is not installed: pip install timm") from None
    model_name = name[len(TIMM_PREFIX):]
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ModelError(f"unknown timm model {model_name!r}{hint}")
    cfg = timm.models.get_pretrained_cfg(model_name)
    cfg = cfg.to_dict() if cfg is not None else {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    prep = Preprocessing(input_size=size, resize_size=int(round(size / crop_pct)),
                         mean=tuple(cfg.get("mean", Preprocessing().mean)), std=tuple(cfg.get("std", Preprocessing().std)))
    num = int(cfg.get("num_classes") or 1000)
    builder = partial(timm.create_model, model_name, pretrained=False, num_classes=num)
    classes = IMAGENET_CLASSES if num == 1000 else tuple(f"class {i}" for i in range(num))
    probe = Architecture(name=name, display_name=name, builder=builder, class_names=classes, default_layer="")
    arch = Architecture(
        name=name, display_name=f"{model_name} (timm)", builder=builder, class_names=classes,
        default_layer=default_cam_layer(probe.build_empty(), size), preprocessing=prep, origin="timm",
        description=f"timm {model_name} (pretrained=False: weights come from your file)",
        paper=str(cfg.get("paper_ids") or ""),
    )
    return ModelEntry(arch, RandomInit(untrained=True), listed=False)


# ---- ours and ZFNet -----------------------------------------------------------------------------
_DEFAULT_SHAPES_META = {
    "classes": ["circle", "square", "triangle", "star", "cross", "ring"], "input_size": 128,
    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "head": "multilabel", "default_layer": "stage4",
    "arch_kwargs": {"num_classes": 6},
}


def shapes_metadata(name: str) -> dict:
    """The JSON metadata written by :mod:`cnnviz_core.train` next to the weights (defaults if absent)."""
    path = WEIGHTS_DIR / f"{name}.json"
    meta = dict(_DEFAULT_SHAPES_META)
    if path.is_file():
        meta.update(json.loads(path.read_text()))
    return meta


def _shapes_entry(name: str, display_name: str, description: str) -> ModelEntry:
    meta = shapes_metadata(name)
    kwargs = dict(meta["arch_kwargs"])
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    size = int(meta["input_size"])
    arch = Architecture(
        name=name, display_name=display_name, builder=partial(ShapesCNN, **kwargs), class_names=tuple(meta["classes"]),
        default_layer=meta.get("default_layer", "stage4"),
        preprocessing=Preprocessing(input_size=size, resize_size=size, mean=tuple(meta["mean"]), std=tuple(meta["std"])),
        output=meta.get("head", "multilabel"), origin="cnnviz", description=description,
        paper="cnnviz (trained by `python -m cnnviz_core.train`)", year=2026,
        facts={"heldout": meta.get("heldout", {}), "train": meta.get("train", {})},
    )
    return ModelEntry(arch, Bundled(WEIGHTS_DIR / f"{name}.pt"))


def _zfnet_entry() -> ModelEntry:
    arch = Architecture(
        name="zfnet", display_name="ZFNet (2013, untrained)", builder=ZFNet, class_names=IMAGENET_CLASSES,
        default_layer="features.13", origin="paper",
        description="Zeiler & Fergus: AlexNet with 7x7 stride-2 conv1 and 5x5 stride-2 conv2. "
                    "No published weights: random initialisation unless a state_dict is given.",
        paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014", year=2013,
        facts={"acc1": 100 - PAPER_TOP1_ERROR, "acc5": 100 - PAPER_TOP5_ERROR, "acc_source": "paper, Table 2"},
    )
    return ModelEntry(arch, RandomInit(untrained=True))


# ---- the registry -------------------------------------------------------------------------------
_ENTRIES: dict[str, ModelEntry] = {}
_LOCK = threading.RLock()
_FILLED = False


def _fill() -> None:
    global _FILLED
    with _LOCK:
        if _FILLED:
            return
        entries = [
            _shapes_entry("shapes-cnn", "Shapes CNN (ours, bundled)",
                          "4-stage CNN + gated fusion + GAP + linear, trained on generated scenes of 6 shapes; "
                          "needs no download."),
            _shapes_entry("shapes-cnn-biased", "Shapes CNN, biased (ours, bundled)",
                          "The same four conv stages (stride-8 stage4, no fusion), trained on scenes whose corner tag "
                          "always matches the class: it learned the tag."),
            _zfnet_entry(),
            *(_torchvision_entry(name, listed=True) for name in ZOO),
        ]
        for entry in entries:
            if entry.name in _ENTRIES:
                raise ValueError(f"model {entry.name!r} registered twice")
            _ENTRIES[entry.name] = entry
        _FILLED = True  # set last: a concurrent reader never sees a half-filled registry


def entries() -> list[ModelEntry]:
    """The listed models: ours first, then ZFNet and the torchvision zoo, in registration order."""
    _fill()
    return [e for e in _ENTRIES.values() if e.listed]


def get_entry(name: str) -> ModelEntry:
    """A model by name: a listed one, any torchvision classification builder, or ``timm:NAME``."""
    _fill()
    with _LOCK:
        entry = _ENTRIES.get(name)
        if entry is not None:
            return entry
        if name.startswith(TIMM_PREFIX):
            entry = _timm_entry(name)
        elif name in torchvision_names():
            entry = _torchvision_entry(name, listed=False)
        else:
            listed = ", ".join(e.name for e in _ENTRIES.values() if e.listed)
            raise ModelError(f"unknown model {name!r}; known models: {listed}; or any torchvision classifier "
                             "name, or timm:NAME")
        _ENTRIES[name] = entry
        return entry


def get_architecture(name: str) -> Architecture:
    return get_entry(name).architecture
